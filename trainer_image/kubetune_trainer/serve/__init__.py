"""Trainer step: serve."""
