"""A launched rank dies with the torchrun that started it, even when torchrun died before the
rank could ask the kernel to watch it (the rank is then init's child already); and the work
directory of a run killed with -9 is removed by the next launch, a live run's never."""

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


HOLDER = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from scoring.reward_model.launcher import _owned\n"
    "with _owned(Path(sys.argv[1])):\n"
    "    print('owned', flush=True)\n"
    "    time.sleep(120)\n"
)


def test_work_directories_of_killed_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """A run killed with -9 cannot remove its work directory (the pairs, maybe a whole
    checkpoint); the next launch on that host does, and only those whose owner died."""
    from scoring.reward_model.launcher import WORK_DIR_PREFIX, remove_abandoned_work_dirs

    killed, live, unowned, other = (
        tmp_path / f"{WORK_DIR_PREFIX}killed",
        tmp_path / f"{WORK_DIR_PREFIX}live",
        tmp_path / f"{WORK_DIR_PREFIX}older",
        tmp_path / "not-ours",
    )
    for directory in (killed, live, unowned, other):
        directory.mkdir()
        (directory / "pairs.jsonl").write_text("{}\n")
    holders = {
        directory: subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", HOLDER, str(directory)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for directory in (killed, live)
    }
    try:
        for holder in holders.values():
            assert holder.stdout is not None and holder.stdout.readline().strip() == "owned"
        assert remove_abandoned_work_dirs(tmp_path) == []  # both owners alive
        holders[killed].kill()
        holders[killed].wait()
        assert remove_abandoned_work_dirs(tmp_path) == [killed]
        assert not killed.exists()
        assert all(directory.is_dir() for directory in (live, unowned, other))
    finally:
        for holder in holders.values():
            holder.kill()
            holder.wait()
