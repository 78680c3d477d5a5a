"""Launching a distributed full fine-tuning as N processes through torchrun, and watching it.

:func:`train_distributed` writes the pairs and settings to a private work directory, starts

    python scoring/reward_model/_exec_with_parent.py <parent pid> -- \\
        python -m torch.distributed.run --standalone --nproc-per-node N \\
        -m scoring.reward_model.distributed job.json

in a new session (its own process group), forwards rank 0's progress lines to ``on_progress``
and polls ``should_stop``. On a stop request, or an exception in the caller (the job was lost,
a time limit), the whole process group is killed. If the calling process itself dies (even by
``kill -9``), the small ``_exec_with_parent`` shim had asked the kernel to kill it with its parent
(``PR_SET_PDEATHSIG``) before it exec'd torchrun, and every rank does the same towards torchrun
(:func:`.distributed.die_with_parent`): nothing survives the caller. The checkpoint is written
by rank 0 atomically, so a killed run leaves no partial checkpoint where one is read.

Several hosts use the same entry point with torchrun's rendezvous options instead of
``--standalone`` (``--nnodes``, ``--node-rank``, ``--rdzv-backend c10d``, ``--rdzv-endpoint``);
see the README. Nothing here starts processes on other hosts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from .devices import check_processes_fit
from .examples import ExampleLike, write_jsonl_examples
from .model import RewardModel
from .training import TrainingConfig, TrainingMetrics

ProgressCallback = Callable[[float, str], None]
StopCheck = Callable[[], bool]

_POLL_S = 0.5
_TERMINATE_GRACE_S = 10.0
_STDERR_TAIL_LINES = 40
_EXEC_WITH_PARENT = Path(__file__).with_name("_exec_with_parent.py")


class DistributedTrainingError(RuntimeError):
    """The launched processes failed; the message carries the tail of their stderr."""


class DistributedTrainingCancelled(Exception):
    """``should_stop`` asked for a stop; every launched process was killed."""


@dataclasses.dataclass
class DistributedResult:
    model: RewardModel
    metrics: TrainingMetrics
    world_size: int


def torchrun_command(processes: int, job_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "scoring.reward_model.distributed",
        str(job_path),
    ]


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM to the whole process group, SIGKILL after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=_TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    # Ranks may linger after the agent exits; the group id outlives its leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _write_job(
    work_dir: Path,
    *,
    base_model: str | os.PathLike[str],
    examples: Sequence[ExampleLike],
    config: TrainingConfig,
    max_length: int | None,
    seed: int,
    device: str,
) -> Path:
    """The pairs and the settings every rank reads (``scoring.reward_model.distributed``)."""
    write_jsonl_examples(work_dir / "pairs.jsonl", examples)
    spec = {
        "base_model": str(base_model),
        "examples": str(work_dir / "pairs.jsonl"),
        "config": dataclasses.asdict(config),
        "max_length": max_length,
        "seed": seed,
        "device": device,
        "output": str(work_dir / "model"),
    }
    job_path = work_dir / "job.json"
    job_path.write_text(json.dumps(spec), encoding="utf-8")
    return job_path


WORK_DIR_PREFIX = "rm-distributed-"
# Locked by the process whose run the work directory is, for as long as it lives.
OWNER_LOCK = "owner.lock"


@contextlib.contextmanager
def _owned(directory: Path) -> Iterator[None]:
    """Hold the directory's owner lock while the run lives; the kernel drops it when this
    process dies, ``kill -9`` included. The lock file appears already locked (locked under
    another name, then renamed), so no sweep can find it free while its owner lives."""
    staging = directory / f".{OWNER_LOCK}.new"
    with open(staging, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.rename(staging, directory / OWNER_LOCK)
        yield


def remove_abandoned_work_dirs(root: Path) -> list[Path]:
    """Remove the work directories under ``root`` whose run's process died without cleaning
    up (``kill -9`` skips it): the pairs, and possibly a full checkpoint, each time. One whose
    owner lock can be taken has no owner; one without a lock file is left alone. Returns the
    directories removed."""
    removed = []
    for directory in root.glob(f"{WORK_DIR_PREFIX}*"):
        try:
            with open(directory / OWNER_LOCK, "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live run, no lock file, or not a directory
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def train_distributed(
    *,
    base_model: str | os.PathLike[str],
    examples: Sequence[ExampleLike],
    config: TrainingConfig,
    processes: int,
    max_length: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    work_root: str | os.PathLike[str] | None = None,
    timeout_s: float | None = None,
) -> DistributedResult:
    """Full fine-tuning of ``base_model`` as ``processes`` ranks (``config.strategy``: DDP or
    FSDP); returns the trained model (loaded from rank 0's checkpoint, float32) and rank 0's
    metrics."""
    if config.mode != "full" or processes < 1:
        raise ValueError("Distributed training needs mode='full' and at least one process.")
    check_processes_fit(processes, cuda=device == "cuda")
    report = on_progress or (lambda fraction, message: None)
    stop_requested = should_stop or (lambda: False)
    root = Path(work_root) if work_root is not None else Path(tempfile.gettempdir())
    remove_abandoned_work_dirs(root)
    with (
        tempfile.TemporaryDirectory(prefix=WORK_DIR_PREFIX, dir=root) as work,
        _owned(Path(work)),
    ):
        work_dir = Path(work)
        job_path = _write_job(
            work_dir,
            base_model=base_model,
            examples=examples,
            config=config,
            max_length=max_length,
            seed=seed,
            device=device,
        )
        stderr_path = work_dir / "stderr.log"
        command = [
            sys.executable,
            str(_EXEC_WITH_PARENT),
            str(os.getpid()),
            "--",
            *torchrun_command(processes, job_path),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        with open(stderr_path, "w", encoding="utf-8") as stderr:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
                start_new_session=True,
            )
            done: dict[str, Any] | None = None
            rank_errors: list[str] = []
            try:
                done = _watch(process, report, stop_requested, timeout_s, rank_errors)
            except BaseException:
                _kill_group(process)
                raise
            # Ranks exit on their own after the agent; make sure of it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if process.returncode != 0 or done is None:
            tail = deque(stderr_path.read_text(errors="replace").splitlines(), _STDERR_TAIL_LINES)
            # The ranks' own errors first: torchrun's summary ends the stderr and names none.
            raise DistributedTrainingError(
                f"distributed training exited with status {process.returncode}:\n"
                + "\n".join([*rank_errors, *tail])
            )
        metrics_fields = {field.name for field in dataclasses.fields(TrainingMetrics)}
        metrics = TrainingMetrics(
            **{key: value for key, value in done["metrics"].items() if key in metrics_fields}
        )
        model = RewardModel.load(done["checkpoint"])
        return DistributedResult(model=model, metrics=metrics, world_size=metrics.world_size)


def _watch(
    process: subprocess.Popen[str],
    report: ProgressCallback,
    stop_requested: StopCheck,
    timeout_s: float | None,
    rank_errors: list[str],
) -> dict[str, Any] | None:
    """Forward progress until the processes exit; returns rank 0's "done" event, if any, and
    appends each failed rank's "error" event (``rank N: Type: message``) to ``rank_errors``."""
    import time

    assert process.stdout is not None  # noqa: S101 - opened with stdout=PIPE
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
    reader.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    done: dict[str, Any] | None = None
    while True:
        if stop_requested():
            _kill_group(process)
            raise DistributedTrainingCancelled
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"distributed training ran past {timeout_s} s")
        try:
            line = lines.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        if line is None:
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a library's own print
        if not isinstance(event, dict):
            continue
        if event.get("event") == "progress":
            report(float(event["fraction"]), str(event["message"]))
        elif event.get("event") == "done":
            done = event
        elif event.get("event") == "error":
            rank_errors.append(f"rank {event.get('rank')}: {event.get('error')}")
    process.wait()
    return done
