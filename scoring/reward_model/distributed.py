"""One rank of a distributed full fine-tuning, started by torchrun (``torch.distributed.run``).

    python -m torch.distributed.run --standalone --nproc-per-node N \\
        -m scoring.reward_model.distributed /path/to/job.json

``job.json`` (written by :mod:`.launcher`) names the base model, the pairs file (JSON lines),
the :class:`.training.TrainingConfig` fields, the token window, and the output directory.
Every rank loads the same base (the reward head is seeded, and DDP broadcasts rank 0's weights
anyway), trains its share of each optimizer step (the config's ``strategy``: DDP replicas or
FSDP shards, see :mod:`.packed_training`; gloo on CPU, NCCL on CUDA, one GPU per local rank),
and rank 0 writes the checkpoint (under FSDP, the whole weights all ranks gathered) atomically
(staging directory + rename, see :mod:`.checkpoint`) and prints progress as JSON lines on
stdout::

    {"event": "progress", "fraction": 0.5, "message": "step 3/6, loss 0.6812"}
    {"event": "done", "checkpoint": "/…/model", "metrics": {…}}

A rank exits when its parent (the torchrun agent) dies, even by ``kill -9``: it asks the
kernel for SIGKILL on its parent's death (``PR_SET_PDEATHSIG``, Linux) and, elsewhere, a watchdog
thread polls the parent pid. So no rank outlives a killed job.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
# Set by _exec_with_parent.py to its own pid, which torchrun keeps across exec.
LAUNCHER_PID_VARIABLE = "ARBITER_TORCHRUN_PID"


def die_with_parent() -> None:
    """Exit at once when the parent process dies (kill -9 included).

    The parent is the one the launcher named (``LAUNCHER_PID_VARIABLE``: torchrun, started by
    ``launcher.train_distributed``) when it did: ``os.getppid()`` alone cannot tell a parent
    that died before this ran (the rank is then init's child already). Without it (torchrun
    started by hand), the parent at start-up."""
    parent = int(os.environ.get(LAUNCHER_PID_VARIABLE) or os.getppid())
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    # Also closes the window where the parent died before prctl took effect.
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def run(job_path: Path) -> None:
    import torch
    import torch.distributed as dist

    spec = json.loads(job_path.read_text(encoding="utf-8"))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = spec.get("device", "cpu") == "cuda" and torch.cuda.is_available()
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        _train_and_save(spec, rank=rank, world_size=world_size, device=device)
    except Exception as error:
        # torchrun's own failure summary fills the end of stderr and, without an error file,
        # names no cause: the launcher puts this line in the job's error.
        emit({"event": "error", "rank": rank, "error": f"{type(error).__name__}: {error}"})
        raise
    finally:
        dist.destroy_process_group()


def _train_and_save(spec: dict[str, Any], *, rank: int, world_size: int, device: Any) -> None:
    """Train this rank's share; rank 0 saves the checkpoint and reports it."""
    import torch.distributed as dist

    from .examples import JsonlExamples
    from .model import RewardModel
    from .packed_training import gather_full_state_dict
    from .training import TrainingConfig, train

    model = RewardModel.from_base(
        spec["base_model"],
        device=device,
        max_length=spec.get("max_length"),
        seed=spec.get("seed", 0),
    )
    config = TrainingConfig(**spec["config"])

    def report(fraction: float, message: str) -> None:
        if rank == 0:
            emit({"event": "progress", "fraction": fraction, "message": message})

    metrics = train(
        model,
        JsonlExamples(spec["examples"]),
        config,
        on_progress=report,
        rank=rank,
        world_size=world_size,
    )
    # Under FSDP each rank holds shards: all of them gather, and rank 0 receives the whole.
    full_weights = gather_full_state_dict(model.model) if config.strategy == "fsdp" else None
    if rank == 0:
        checkpoint = model.save(spec["output"], state_dict=full_weights)
        emit({"event": "done", "checkpoint": str(checkpoint), "metrics": metrics.as_dict()})
    # No rank leaves before the checkpoint is complete.
    dist.barrier()


def main(argv: list[str] | None = None) -> None:
    die_with_parent()
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m scoring.reward_model.distributed JOB.json")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run(Path(args[0]))


if __name__ == "__main__":
    main()
