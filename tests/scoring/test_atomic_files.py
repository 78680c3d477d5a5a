"""Model directories are swapped into place whole: a process killed between the two renames
of a swap leaves the old directory parked, and the next swap puts it back first."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from scoring.reward_model.files import move_into_place

REPO = Path(__file__).resolve().parents[2]

# Replaces out/ with stage/ and is SIGKILLed at the second rename (stage -> out).
KILLED_SWAP = r"""
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from scoring.reward_model import files
root = Path(sys.argv[1])
real, calls = os.rename, []
def rename(source, target):
    calls.append(source)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(source, target)
os.rename = rename
files.move_into_place(root / "stage", root / "out")
"""


def _directory(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "model.onnx").write_text(text)
    return path


def test_a_swap_killed_between_its_renames_is_put_right_by_the_next(tmp_path):
    _directory(tmp_path / "out", "old")
    _directory(tmp_path / "stage", "new")
    done = subprocess.run([sys.executable, "-c", KILLED_SWAP, str(tmp_path), str(REPO)])
    assert done.returncode == -signal.SIGKILL
    assert not (tmp_path / "out").exists()  # the window the next swap must repair
    move_into_place(_directory(tmp_path / "next", "newer"), tmp_path / "out")
    assert (tmp_path / "out" / "model.onnx").read_text() == "newer"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "stage"]


def test_without_a_new_directory_the_parked_one_is_what_the_next_swap_replaces(tmp_path):
    parked = _directory(tmp_path / ".out.old-0123", "old")
    move_into_place(_directory(tmp_path / "stage", "new"), tmp_path / "out")
    assert (tmp_path / "out" / "model.onnx").read_text() == "new"
    assert not parked.exists()
