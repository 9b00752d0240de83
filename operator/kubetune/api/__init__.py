"""Versioned API of kubetune's custom resources; ``v1alpha1`` is the only version so far."""
