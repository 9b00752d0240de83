"""Trainer step: serve a fine-tuned model with Triton Inference Server.

Why this package exists: a ModelDeployment turns a merged model into a Triton model repository
(and, for TensorRT-LLM, an engine), serves it, and smoke-tests every new revision. The operator,
the build and smoke-test Jobs, ``kubetune run --local`` and the tests share this code. Modules:

* pure, importable without torch or tritonclient (the operator uses them):
  :mod:`.pbtxt` (render/validate ``config.pbtxt``), :mod:`.python_backend` and :mod:`.tensorrtllm`
  (repository files from a ``v1alpha1.ServingSpec``), :mod:`.engine` (TensorRT-LLM build commands),
  :mod:`.revision` (content hash naming a revision);
* :mod:`.repository` writes a repository atomically; :mod:`.server` runs a real tritonserver on
  CPU; :mod:`.client` asks a served model for text; :mod:`.command` is the
  ``python -m kubetune_trainer serve`` command line;
* :mod:`.triton_models` holds the Triton Python models copied into repositories as ``model.py``.
"""
