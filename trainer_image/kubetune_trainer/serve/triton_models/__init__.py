"""Triton Python-backend models, shipped as source and copied into model repositories as ``model.py``.

Why this package exists: a Triton model repository must be self-contained, since the Triton pod
runs an image in which kubetune is not installed. So these modules import only what a serving image
has (numpy, torch, transformers and Triton's ``triton_python_backend_utils``) and never each other
or kubetune; :mod:`kubetune_trainer.serve.repository` reads them as text and writes them out.
They are real modules (not strings) so that ruff and mypy check them like the rest of the code.
"""
