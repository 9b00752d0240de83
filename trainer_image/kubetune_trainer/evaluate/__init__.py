"""Trainer step: evaluate."""
