"""Writing a directory of model files atomically, without torch: stage, fix the modes, fsync,
rename into place (checkpoints, ONNX and serving exports share these)."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

# A staging directory nothing has written to for this long was left by a save that was killed
# (SIGKILL, the OOM killer). Age, not a pid: on a shared store the save may be another host's.
STALE_STAGING_SECONDS = 6 * 60 * 60


def staging_directory(final_path: Path) -> Path:
    """A new hidden sibling of ``final_path`` to write into before :func:`move_into_place`.

    First removes the stale ones earlier, killed saves of the same path left (a whole copy of
    the weights each): an exception removes its own, a kill cannot."""
    prefix = _staging_prefix(final_path)
    remove_stale_siblings(final_path.parent, prefix)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=final_path.parent))


def remove_stale_siblings(parent: Path, *prefixes: str) -> None:
    """Remove the entries of ``parent`` named with one of ``prefixes`` that nothing has
    written to for ``STALE_STAGING_SECONDS``."""
    now = time.time()
    for prefix in prefixes:
        for leftover in parent.glob(f"{glob.escape(prefix)}*"):
            newest = _newest_mtime(leftover)
            if newest is not None and now - newest > STALE_STAGING_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)


def _staging_prefix(final_path: Path) -> str:
    return f".{final_path.name}.partial-"


def _newest_mtime(directory: Path) -> float | None:
    """The latest mtime of ``directory`` and everything in it; None if it changes under us
    (a live save renaming or removing it), which is never stale."""
    try:
        return max(
            [directory.lstat().st_mtime, *(path.lstat().st_mtime for path in directory.rglob("*"))]
        )
    except FileNotFoundError:
        return None


def fsync_tree(directory: Path) -> None:
    for file_path in directory.rglob("*"):
        if file_path.is_file():
            with open(file_path, "rb") as handle:
                os.fsync(handle.fileno())


def fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def chmod_from_umask(directory: Path) -> None:
    """Give ``directory`` and its files the modes ``mkdir`` and ``open`` give under the umask.

    ``tempfile.mkdtemp`` makes a directory 0700 whatever the umask, and safetensors writes its
    file 0600: a reader running as another user (a serving process) could open neither."""
    umask = os.umask(0o022)  # reading the umask means setting it; put back at once
    os.umask(umask)
    for path in directory.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    directory.chmod(0o777 & ~umask)


def move_into_place(staging: Path, final_path: Path) -> None:
    """Rename ``staging`` to ``final_path``, replacing what is there; first puts back what a
    process killed halfway through an earlier swap left parked (see below)."""
    _recover_parked(final_path)
    if not final_path.exists():
        os.rename(staging, final_path)
        return
    # A directory cannot be renamed over a non-empty one: park the old checkpoint first and put
    # it back if the swap fails, so the final path always holds a complete checkpoint or none.
    retired = final_path.with_name(f"{_parked_prefix(final_path)}{uuid.uuid4().hex}")
    os.rename(final_path, retired)
    try:
        os.rename(staging, final_path)
    except BaseException:
        os.rename(retired, final_path)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _parked_prefix(final_path: Path) -> str:
    return f".{final_path.name}.old-"


def _recover_parked(final_path: Path) -> None:
    """A SIGKILL between the two renames leaves no directory at ``final_path`` and the old one
    parked beside it (``except`` never ran): put the newest parked one back. After a kill past
    the second rename, the parked ones are only leftovers: removed."""
    parked = sorted(
        final_path.parent.glob(f"{glob.escape(_parked_prefix(final_path))}*"),
        key=lambda path: path.stat().st_mtime,
    )
    if parked and not final_path.exists():
        os.rename(parked.pop(), final_path)
    for leftover in parked:
        shutil.rmtree(leftover, ignore_errors=True)
