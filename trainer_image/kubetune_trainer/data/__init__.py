"""Trainer step: data."""
