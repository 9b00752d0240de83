"""The export step: turn the trained weights into a servable, verifiable artifact.

``merge`` folds a LoRA adapter into the base weights (what Triton and TensorRT-LLM serve);
``manifest`` lists every file of the artifact with its size and sha256, and the manifest's own
sha256 is the artifact digest the operator records and deployments pin. ``manifest`` imports
no torch, so the operator can verify an artifact without the training stack.
"""
