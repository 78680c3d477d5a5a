"""The host side of the sandbox: checks of the machine, slots (one flock and one uid each) and
the processes of a slot's uid, found and killed through /proc.

See `annotation.tools.sandbox` for how a run is isolated.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import stat
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from annotation.tools.sandbox_config import (
    SYSTEM_ETC_FILES,
    SYSTEM_LINKS,
    TEARDOWN_GRACE_S,
    WORK_DIR,
    SandboxBusy,
    SandboxConfig,
    SandboxUnavailable,
    Slot,
)

# --- host checks --------------------------------------------------------------------------------


def require_tool(name: str) -> str:
    # ARBITER_SANDBOX_BWRAP / ARBITER_SANDBOX_PRLIMIT name a binary outside the usual places.
    variable = f"ARBITER_SANDBOX_{name.upper()}"
    configured = os.environ.get(variable)
    if configured:
        if not os.access(configured, os.X_OK):
            raise SandboxUnavailable(f"{variable}={configured} is not an executable file.")
        return configured
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/local/bin")
    if path is None:
        package = "bubblewrap" if name == "bwrap" else "util-linux"
        raise SandboxUnavailable(
            f"`{name}` was not found; install it (Debian/Ubuntu: apt-get install {package})."
        )
    return path


@cache
def _check_uid_range(uid_base: int, slots: int) -> None:
    for uid in range(uid_base, uid_base + slots):
        with contextlib.suppress(KeyError):
            owner = pwd.getpwuid(uid).pw_name
            raise SandboxUnavailable(
                f"uid {uid} belongs to the user {owner!r}; sandbox slots need uids nobody else "
                "uses, so set ARBITER_SANDBOX_UID_BASE to a free range."
            )


def _prepare_runtime_dir(config: SandboxConfig) -> None:
    for directory in (config.runtime_dir, config.scratch_root, config.etc_dir):
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        info = directory.lstat()
        # Anyone who could write here could swap the files we bind into the sandbox.
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            raise SandboxUnavailable(
                f"{directory} must be a directory owned by uid {os.geteuid()} that others "
                "cannot write; remove it or set ARBITER_SANDBOX_RUNTIME_DIR elsewhere."
            )
        if stat.S_IMODE(info.st_mode) != 0o755:
            os.chmod(directory, 0o755)  # noqa: S103 - slot uids must traverse and read it
    passwd = "".join(
        f"sandbox{i}:x:{config.slot_uid(i)}:{config.slot_uid(i)}::{WORK_DIR}:/usr/sbin/nologin\n"
        for i in range(config.slots)
    )
    group = "".join(f"sandbox{i}:x:{config.slot_uid(i)}:\n" for i in range(config.slots))
    _write_if_changed(config.etc_dir / "passwd", passwd + "nobody:x:65534:65534::/:/bin/false\n")
    _write_if_changed(config.etc_dir / "group", group + "nogroup:x:65534:\n")


def _write_if_changed(path: Path, content: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == content:
            return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    temporary.write_text(content)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


@cache
def system_mount_args() -> tuple[str, ...]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in SYSTEM_LINKS:
        host_path = Path("/") / name
        if host_path.is_symlink():
            args += ["--symlink", os.readlink(host_path), str(host_path)]
        elif host_path.is_dir():
            # Distributions without a merged /usr keep real libraries here.
            args += ["--ro-bind", str(host_path), str(host_path)]
    for path in SYSTEM_ETC_FILES:
        args += ["--ro-bind-try", path, path]
    return tuple(args)


# --- slots ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def acquire_slot(
    config: SandboxConfig | None = None, *, wait_s: float | None = None
) -> Iterator[Slot]:
    """Claim a free slot for the duration of the block, waiting up to `wait_s` for one."""
    config = config or SandboxConfig.from_env()
    drop_privileges = os.geteuid() == 0
    if drop_privileges:
        _check_uid_range(config.uid_base, config.slots)
    _prepare_runtime_dir(config)
    deadline = time.monotonic() + (config.slot_wait_s if wait_s is None else wait_s)
    first = (os.getpid() + threading.get_ident()) % config.slots
    pause = 0.002
    while True:
        for offset in range(config.slots):
            index = (first + offset) % config.slots
            lock_fd = _try_lock(config.runtime_dir / f"slot-{index}.lock")
            if lock_fd is None:
                continue
            slot = Slot(index, config.slot_uid(index), config, drop_privileges)
            try:
                _remove_scratch_dirs(slot)  # left by a worker that died mid-run
                yield slot
            finally:
                if drop_privileges:
                    kill_uid(slot.uid)
                os.close(lock_fd)
            return
        if time.monotonic() >= deadline:
            raise SandboxBusy(f"all {config.slots} sandbox slots stayed busy")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_scratch_dirs(slot: Slot) -> None:
    for leftover in slot.config.scratch_root.glob(f"slot-{slot.index}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def sandbox_sweep(config: SandboxConfig | None = None) -> int:
    """Clean up after sandbox workers that died (kill -9): for every slot nobody holds, kill
    what still runs under its uid and remove its scratch directories. Returns how many slots
    it swept. Safe at any time: a slot in use is locked, and skipped."""
    config = config or SandboxConfig.from_env()
    if not config.runtime_dir.is_dir():
        return 0
    drop_privileges = os.geteuid() == 0
    if drop_privileges:
        _check_uid_range(config.uid_base, config.slots)
    swept = 0
    for index in range(config.slots):
        lock_fd = _try_lock(config.runtime_dir / f"slot-{index}.lock")
        if lock_fd is None:
            continue
        try:
            slot = Slot(index, config.slot_uid(index), config, drop_privileges)
            if drop_privileges:
                kill_uid(slot.uid)
            _remove_scratch_dirs(slot)
            swept += 1
        finally:
            os.close(lock_fd)
    return swept


# --- processes -----------------------------------------------------------------------------------


def _process_state(pid: int) -> str | None:
    """The one-letter state of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces and parentheses; the state follows the last ')'.
    return raw[raw.rfind(b")") + 2 : raw.rfind(b")") + 3].decode() or None


def is_alive(pid: int) -> bool:
    # A zombie has released everything but its pid; it waits for its (host) parent to reap it.
    return _process_state(pid) not in (None, "Z", "X")


def pids_of_uids(uids: range) -> list[int]:
    pids = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                owner = entry.stat(follow_symlinks=False).st_uid
            except FileNotFoundError:
                continue
            if owner in uids:
                pids.append(int(entry.name))
    return pids


def count_processes_of_uid(uid: int) -> int:
    return len(pids_of_uids(range(uid, uid + 1)))


def kill_uid(uid: int, *, grace_s: float = TEARDOWN_GRACE_S) -> None:
    """SIGKILL every live process of a slot uid (only used when that uid is the slot's alone)."""
    deadline = time.monotonic() + grace_s
    while True:
        survivors = [pid for pid in pids_of_uids(range(uid, uid + 1)) if is_alive(pid)]
        if not survivors or time.monotonic() >= deadline:
            return
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)


def wait_until_dead(pid: int, *, grace_s: float = TEARDOWN_GRACE_S) -> None:
    deadline = time.monotonic() + grace_s
    pause = 0.0005
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def process_marker(config: SandboxConfig) -> str:
    digest = hashlib.sha256(str(config.runtime_dir).encode()).hexdigest()[:16]
    return f"ARBITER_SANDBOX_{digest}"


def memfd(name: str, content: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
