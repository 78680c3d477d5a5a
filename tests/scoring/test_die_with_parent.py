"""A launched rank dies with the torchrun that started it, even when torchrun died before the
rank could ask the kernel to watch it (the rank is then init's child already)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "scoring" / "reward_model" / "_exec_with_parent.py"
RANK = (
    "from scoring.reward_model.distributed import die_with_parent\n"
    "die_with_parent()\n"
    "print('alive')\n"
)


def _rank(launcher_pid: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARBITER_TORCHRUN_PID": str(launcher_pid)}
    return subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", RANK],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_rank_whose_named_launcher_is_gone_exits_at_once() -> None:
    # Here the rank's parent is this test process: named, the rank lives.
    alive = _rank(os.getpid())
    assert alive.returncode == 0 and alive.stdout.strip() == "alive", alive.stderr
    # A launcher that already exited: the rank's parent is not it, so it exits first thing.
    gone = subprocess.Popen(["true"])  # noqa: S607
    gone.wait()
    orphan = _rank(gone.pid)
    assert orphan.returncode == 1 and "alive" not in orphan.stdout


def test_the_shim_names_its_own_pid_which_exec_keeps() -> None:
    shown = subprocess.run(  # noqa: S603
        [
            sys.executable,
            str(SHIM),
            str(os.getpid()),
            "--",
            sys.executable,
            "-c",
            "import os; print(os.environ['ARBITER_TORCHRUN_PID'] == str(os.getpid()))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0 and shown.stdout.strip() == "True", shown.stderr
