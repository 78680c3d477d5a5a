"""Run a command that dies with a given parent process (``kill -9`` included).

    python path/to/_exec_with_parent.py PARENT_PID -- COMMAND [ARGS...]

Run by path, not as a module, so that it imports nothing heavy: it asks the kernel to SIGKILL
it when its parent dies (``PR_SET_PDEATHSIG``, Linux; kept across exec), checks the parent is
still the one named (closing the race with a parent that died first), then execs the command.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
# Kept equal to distributed.LAUNCHER_PID_VARIABLE (this file imports nothing of the package).
LAUNCHER_PID_VARIABLE = "ARBITER_TORCHRUN_PID"


def main(args: list[str]) -> None:
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: _exec_with_parent.py PARENT_PID -- COMMAND [ARGS...]")
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != int(args[0]):
        sys.exit(1)  # the parent is already gone
    # exec keeps this pid: torchrun's, the parent every rank must find (die_with_parent).
    environment = {**os.environ, LAUNCHER_PID_VARIABLE: str(os.getpid())}
    os.execve(args[2], args[2:], environment)  # noqa: S606 - argv built by train_distributed


if __name__ == "__main__":
    main(sys.argv[1:])
