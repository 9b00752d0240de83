"""The train step: one recipe class per fine-tuning method and process topology.

Recipes are named ``<method>_<topology>`` after torchtune's: ``LoRASingleDevice``,
``LoRADistributed``, ``QLoRASingleDevice``, ``PrefixSingleDevice``, ``FreezeDistributed`` and
``FullDistributed``. Each has ``setup / train / save_checkpoint / cleanup`` and composes shared
modules (``_model``, ``batching``, ``_trainer``, ``_deepspeed``, ``checkpoints``) rather than
inheriting from another recipe; ``registry`` picks one from the method and the process count,
and ``trained`` loads the result (``checkpoints/final``) for the evaluate and export steps.

Exit codes of ``python -m kubetune_trainer train``:

* 0 - trained to the end; the weights are in ``checkpoints/final``.
* 2 - a usage or input error (bad config, missing data, QLoRA without a GPU); retrying won't help.
* 75 (:data:`EXIT_INTERRUPTED`, ``EX_TEMPFAIL``) - stopped early by SIGTERM (or ``--stop-at``)
  after saving a complete checkpoint; run again to resume from it. Under ``torchrun`` every rank
  exits 75 but torchrun itself exits 1 when it was the one signalled, so the dependable sign of a
  clean stop is the checkpoint (``status.checkpoint``, the completion marker), not the code.
* 1 or a signal - crashed; a retry resumes from the latest complete checkpoint.

``deepspeed_config`` and ``registry`` import no torch, so the operator can use them.
"""

#: Exit code of a run that saved a checkpoint and stopped before the end (sysexits' EX_TEMPFAIL).
EXIT_INTERRUPTED = 75
