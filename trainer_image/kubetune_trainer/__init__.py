"""kubetune_trainer: what runs inside a FineTuneJob's pods (and on a laptop with ``kubetune run --local``).

Each step (prepare, train, evaluate, export, serve) reads the same :class:`TrainerConfig` the
operator writes, so a run on a laptop and a run in a pod share every line of code.
"""

__version__ = "0.1.0"
