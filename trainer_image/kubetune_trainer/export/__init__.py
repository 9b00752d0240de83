"""Trainer step: export."""
