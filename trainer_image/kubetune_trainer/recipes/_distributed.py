"""The process topology a recipe runs in, read from the environment torchrun sets.

Multi-GPU and multi-node training is launched by ``torchrun`` (the operator renders it), which
exports ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous address; the Hugging Face
``Trainer`` picks those up. DeepSpeed needs a process group even for one process, so a single
process that trains under DeepSpeed (a CPU test, one GPU) gets a one-member group on localhost.
"""

from __future__ import annotations

import os
import socket

import torch.distributed as dist


def world_size() -> int:
    """Number of training processes (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """Global rank of this process (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Whether this process writes shared files (reports, markers, the final model)."""
    return rank() == 0


def ensure_process_group_env() -> list[str]:
    """Give a process not launched by torchrun the environment of a one-process group.

    Returns:
        The variables it set, for :func:`forget_env` (empty when torchrun set them).
    """
    if "WORLD_SIZE" in os.environ:
        return []
    added = {
        "WORLD_SIZE": "1",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    os.environ.update(added)
    return list(added)


def forget_env(names: list[str]) -> None:
    """Remove variables set by :func:`ensure_process_group_env`."""
    for name in names:
        os.environ.pop(name, None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def destroy() -> None:
    """Tear down the process group and accelerate's process-wide state.

    A pod trains once and exits, but a process that trains twice (a notebook, the tests) must not
    carry a DeepSpeed or DDP setup into a run that uses neither.
    """
    from accelerate.state import AcceleratorState

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    AcceleratorState._reset_state(reset_partial_state=True)
