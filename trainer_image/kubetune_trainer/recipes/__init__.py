"""Trainer step: recipes."""
