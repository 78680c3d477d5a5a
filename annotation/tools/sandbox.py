"""Run an untrusted program inside a bubblewrap sandbox.

One call of `run_sandboxed` starts `prlimit ... -- bwrap ... -- PROGRAM` and gives back what the
program printed and how it ended. The layers, outermost first:

- Slots. At most `ARBITER_SANDBOX_SLOTS` programs run at once per host. A slot is taken with an
  `flock` on `<runtime dir>/slot-N.lock`, so Celery worker processes and threads never share one;
  the kernel drops the lock when a worker dies.
- A host uid per slot. When the server runs as root, bubblewrap is started as uid/gid
  `ARBITER_SANDBOX_UID_BASE + N` with no supplementary groups, so the program can never act as
  root on the host and `RLIMIT_NPROC` (counted per real uid) is the slot's own budget. Without
  root the program keeps the server's uid on the host and sees uid BASE + N inside.
- Resource limits (prlimit, applied before bwrap is executed): CPU seconds, address space and
  data segment, processes, file size, open files, stack, no core dumps.
- Namespaces: new user, mount, PID, network (loopback only, down), IPC, UTS and cgroup
  namespaces; no nested user namespaces; every capability dropped; a new terminal session;
  killed with SIGKILL if the server dies.
- System calls: a seccomp filter (annotation/tools/seccomp.py, through `--seccomp`) refuses
  with EPERM what no sandboxed language needs: ptrace, mount, keyctl, bpf, perf_event_open,
  userfaultfd, unshare/setns and clone into new namespaces, and the like.
- File system: a read-only `/usr` (and the `/bin`, `/lib*` links into it), the dynamic linker
  cache, a generated `/etc/passwd` and `/etc/group` (bound from memory, like a compiled
  program, so that /proc/self/mountinfo names no host path of the runtime directory), fresh
  `/proc` and `/dev`, and size-capped private tmpfs mounts on `/sandbox` (the work
  directory), `/tmp` and `/dev/shm`. The root itself is read-only. Nothing under /work,
  /root, /home, /var or the rest of /etc is visible.
- The parent enforces the wall-clock limit and the output limit, and kills the whole process
  group; when bubblewrap's pid 1 dies the kernel kills everything left in the PID namespace.
  After every run the slot's uid is swept for survivors and the scratch directory is removed.

If bubblewrap, prlimit or unprivileged user namespaces are missing, nothing runs: every entry
point raises `SandboxUnavailable`. There is deliberately no unsandboxed fallback.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import pwd
import secrets
import selectors
import shutil
import signal
import stat
import subprocess  # noqa: S404 - we start bubblewrap with fixed argument lists, never a shell
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from annotation.tools import seccomp

MIB = 1024 * 1024

WORK_DIR = "/sandbox"
BUILD_DIR = "/build"

# Extra processes bubblewrap needs in the slot's uid: its monitor and the namespace's pid 1.
_BWRAP_OWN_PROCESSES = 3
_READ_CHUNK = 64 * 1024
# After a kill, how long we wait for the pipes and pid 1 to go away before giving up on them.
_TEARDOWN_GRACE_S = 3.0
_SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_SYSTEM_ETC_FILES = ("/etc/ld.so.cache", "/etc/alternatives")
_SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# pid 1 of every sandbox: a shell that starts the program and waits for it. The program is not
# pid 1 itself because pid 1 ignores default-action signals (SIGABRT from assert, SIGXCPU...).
# A background job's stdin would be /dev/null, hence the detour through fd 3.
_INIT_ARGV = ("/bin/sh", "-c", 'exec 3<&0; "$@" 0<&3 3<&- & wait $!', "sandbox-init")


class SandboxUnavailable(RuntimeError):
    """The host cannot isolate untrusted code, so nothing was run."""


class SandboxBusy(RuntimeError):
    """Every sandbox slot stayed busy for the whole wait."""


def _env_number(name: str, default: float, *, minimum: float, integer: bool) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    return int(_env_number(name, default, minimum=minimum, integer=True))


def _env_float(name: str, default: float, *, minimum: float) -> float:
    return _env_number(name, default, minimum=minimum, integer=False)


@dataclass(frozen=True)
class SandboxConfig:
    """Where the sandbox keeps its locks and scratch files, and how many programs run at once."""

    runtime_dir: Path = Path("/tmp/arbiter-sandbox")  # noqa: S108 - checked: ours, not shared
    slots: int = 4
    uid_base: int = 60000
    slot_wait_s: float = 60.0

    @classmethod
    def from_env(cls) -> SandboxConfig:
        return cls(
            runtime_dir=Path(os.environ.get("ARBITER_SANDBOX_RUNTIME_DIR") or cls.runtime_dir),
            slots=_env_int("ARBITER_SANDBOX_SLOTS", cls.slots),
            uid_base=_env_int("ARBITER_SANDBOX_UID_BASE", cls.uid_base, minimum=1000),
            slot_wait_s=_env_float("ARBITER_SANDBOX_SLOT_WAIT_S", cls.slot_wait_s, minimum=0),
        )

    @property
    def scratch_root(self) -> Path:
        return self.runtime_dir / "runs"

    @property
    def etc_dir(self) -> Path:
        return self.runtime_dir / "etc"

    def slot_uid(self, index: int) -> int:
        return self.uid_base + index


@dataclass(frozen=True)
class Limits:
    """What one sandboxed program may use. Sizes are bytes."""

    wall_time_s: float = 10.0
    memory_bytes: int = 512 * MIB
    # V8 reserves far more address space than it touches, so JavaScript raises this and relies
    # on memory_bytes (RLIMIT_DATA, which counts only writable private mappings) instead.
    address_space_bytes: int | None = None
    max_processes: int = 64
    max_file_bytes: int = 16 * MIB
    max_open_files: int = 256
    max_output_bytes: int = 1 * MIB
    scratch_bytes: int = 64 * MIB
    stack_bytes: int = 8 * MIB

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            wall_time_s=_env_float("ARBITER_SANDBOX_TIMEOUT_S", cls.wall_time_s, minimum=0.1),
            memory_bytes=_env_int("ARBITER_SANDBOX_MEMORY_MB", cls.memory_bytes // MIB) * MIB,
            max_processes=_env_int("ARBITER_SANDBOX_MAX_PROCESSES", cls.max_processes),
        )

    def replace(self, **changes: object) -> Limits:
        return replace(self, **changes)  # type: ignore[arg-type]

    def prlimit_args(self, *, extra_processes: int) -> list[str]:
        # The CPU limit backs up the wall clock for programs that burn several cores at once.
        cpu_soft = math.ceil(self.wall_time_s) + 1
        address_space = self.address_space_bytes or self.memory_bytes
        return [
            f"--cpu={cpu_soft}:{cpu_soft + 1}",
            f"--as={address_space}",
            f"--data={self.memory_bytes}",
            f"--stack={min(self.stack_bytes, self.memory_bytes)}",
            f"--nproc={self.max_processes + extra_processes}",
            f"--fsize={self.max_file_bytes}",
            f"--nofile={self.max_open_files}",
            "--core=0",
        ]


@dataclass(frozen=True)
class Slot:
    """A claimed sandbox slot: its index and the uid its programs run as."""

    index: int
    uid: int
    config: SandboxConfig
    drop_privileges: bool

    @contextlib.contextmanager
    def scratch_dir(self) -> Iterator[Path]:
        """A host directory the slot's uid may write (compiler output); removed afterwards."""
        path = self.config.scratch_root / f"slot-{self.index}-{secrets.token_hex(6)}"
        path.mkdir(mode=0o700)
        try:
            if self.drop_privileges:
                os.chown(path, self.uid, self.uid)
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Outcome:
    """How a sandboxed program ended. `exit_code` is None when the sandbox had to kill it."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    output_exceeded: bool
    duration_ms: int

    @property
    def term_signal(self) -> int | None:
        # bubblewrap reports a death by signal N as exit code 128 + N, like a shell.
        if self.exit_code is not None and 128 < self.exit_code <= 128 + 64:
            return self.exit_code - 128
        return None


@dataclass(frozen=True)
class StrayReport:
    """Sandbox leftovers on this host: live processes, scratch directories and mounts."""

    processes: tuple[int, ...]
    scratch_dirs: tuple[str, ...]
    mounts: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not (self.processes or self.scratch_dirs or self.mounts)


# --- host checks --------------------------------------------------------------------------------


def _require_tool(name: str) -> str:
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
def _system_mount_args() -> tuple[str, ...]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_LINKS:
        host_path = Path("/") / name
        if host_path.is_symlink():
            args += ["--symlink", os.readlink(host_path), str(host_path)]
        elif host_path.is_dir():
            # Distributions without a merged /usr keep real libraries here.
            args += ["--ro-bind", str(host_path), str(host_path)]
    for path in _SYSTEM_ETC_FILES:
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
                    _kill_uid(slot.uid)
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
                _kill_uid(slot.uid)
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


def _is_alive(pid: int) -> bool:
    # A zombie has released everything but its pid; it waits for its (host) parent to reap it.
    return _process_state(pid) not in (None, "Z", "X")


def _pids_of_uids(uids: range) -> list[int]:
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


def _count_processes_of_uid(uid: int) -> int:
    return len(_pids_of_uids(range(uid, uid + 1)))


def _kill_uid(uid: int, *, grace_s: float = _TEARDOWN_GRACE_S) -> None:
    """SIGKILL every live process of a slot uid (only used when that uid is the slot's alone)."""
    deadline = time.monotonic() + grace_s
    while True:
        survivors = [pid for pid in _pids_of_uids(range(uid, uid + 1)) if _is_alive(pid)]
        if not survivors or time.monotonic() >= deadline:
            return
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)


def _wait_until_dead(pid: int, *, grace_s: float = _TEARDOWN_GRACE_S) -> None:
    deadline = time.monotonic() + grace_s
    pause = 0.0005
    while _is_alive(pid) and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def _process_marker(config: SandboxConfig) -> str:
    digest = hashlib.sha256(str(config.runtime_dir).encode()).hexdigest()[:16]
    return f"ARBITER_SANDBOX_{digest}"


def _memfd(name: str, content: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# --- running -------------------------------------------------------------------------------------


def run_sandboxed(
    slot: Slot,
    argv: Sequence[str],
    *,
    limits: Limits,
    files: Mapping[str, bytes] | None = None,
    stdin: bytes = b"",
    read_only_binds: Sequence[tuple[Path, str]] = (),
    writable_binds: Sequence[tuple[Path, str]] = (),
    env: Mapping[str, str] | None = None,
    executables: Mapping[str, bytes] | None = None,
) -> Outcome:
    """Run `argv` in a fresh sandbox in `slot` and return how it ended.

    `files` maps names to contents copied into the work directory `/sandbox` before the
    program starts; the binds expose host paths (for example a compiler's output directory);
    `executables` maps absolute paths to contents placed read-only and executable (a compiled
    program, without showing the host path it was built in).
    Raises SandboxUnavailable when bubblewrap cannot set the sandbox up.
    """
    prlimit = _require_tool("prlimit")
    bwrap = _require_tool("bwrap")
    extra_processes = _BWRAP_OWN_PROCESSES
    if not slot.drop_privileges:
        # RLIMIT_NPROC counts every process of the real uid, and here that is the server's own.
        extra_processes += _count_processes_of_uid(os.getuid())

    # Everything the child needs is passed as a descriptor; the parent's copies are closed as
    # soon as bubblewrap has started (an open write end would keep the status pipe from ending).
    child_fds: list[int] = []
    status_read = -1
    try:
        stdin_fd = _memfd("arbiter-stdin", stdin)
        child_fds.append(stdin_fd)
        file_args: list[str] = []
        for name, content in (files or {}).items():
            child_fds.append(_memfd("arbiter-file", content))
            file_args += ["--file", str(child_fds[-1]), f"{WORK_DIR}/{name}"]
        # Contents bound read-only from descriptors rather than host files: the sandbox's
        # /proc/self/mountinfo then names no host path under the runtime directory.
        data_binds: list[tuple[int, str, int]] = []
        for target, name in (("/etc/passwd", "passwd"), ("/etc/group", "group")):
            child_fds.append(_memfd("arbiter-etc", (slot.config.etc_dir / name).read_bytes()))
            data_binds.append((child_fds[-1], target, 0o444))
        for target, content in (executables or {}).items():
            child_fds.append(_memfd("arbiter-program", content))
            data_binds.append((child_fds[-1], target, 0o555))
        seccomp_args: list[str] = []
        program = seccomp.filter_program()
        if program is not None:
            child_fds.append(_memfd("arbiter-seccomp", program))
            seccomp_args = ["--seccomp", str(child_fds[-1])]
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        child_fds.append(status_write)
        command = [
            prlimit,
            *limits.prlimit_args(extra_processes=extra_processes),
            "--",
            bwrap,
            *_bwrap_args(slot, limits, read_only_binds, writable_binds, env or {}, data_binds),
            *file_args,
            *seccomp_args,
            "--json-status-fd",
            str(status_write),
            "--",
            *_INIT_ARGV,
            *argv,
        ]
        started = time.monotonic()
        try:
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                command,
                stdin=stdin_fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=child_fds[1:],
                # Nothing of the server's environment (secrets, database URLs) may reach the
                # sandbox, not even through bubblewrap's own /proc/PID/environ.
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd="/",
                start_new_session=True,
                user=slot.uid if slot.drop_privileges else None,
                group=slot.uid if slot.drop_privileges else None,
                extra_groups=[] if slot.drop_privileges else None,
            )
        except OSError as error:
            raise SandboxUnavailable(f"could not start bubblewrap: {error}") from error
        while child_fds:
            os.close(child_fds.pop())
        with process:
            run = _RunningSandbox(process, status_read, limits)
            try:
                run.collect()
            finally:
                run.stop()
        duration_ms = round((time.monotonic() - started) * 1000)
    finally:
        for fd in [*child_fds, status_read]:
            if fd >= 0:
                os.close(fd)

    if slot.drop_privileges:
        _kill_uid(slot.uid)
    killed_by_us = run.timed_out or run.output_exceeded
    if not killed_by_us and "exit-code" not in run.status:
        # bubblewrap reports an exit code only once the program was actually executed.
        detail = run.stderr.decode(errors="replace").strip() or f"exit {process.returncode}"
        raise SandboxUnavailable(f"bubblewrap could not set up the sandbox: {detail}")
    exit_code = None if killed_by_us else int(run.status["exit-code"])  # type: ignore[call-overload]
    return Outcome(
        exit_code, run.stdout, run.stderr, run.timed_out, run.output_exceeded, duration_ms
    )


def _bwrap_args(
    slot: Slot,
    limits: Limits,
    read_only_binds: Sequence[tuple[Path, str]],
    writable_binds: Sequence[tuple[Path, str]],
    env: Mapping[str, str],
    data_binds: Sequence[tuple[int, str, int]] = (),
) -> list[str]:
    scratch = str(limits.scratch_bytes)
    args = [
        # A no-op (the environment is cleared) that marks this host's sandboxes for
        # stray_report without naming the runtime directory.
        "--unsetenv",
        _process_marker(slot.config),
        # --unshare-all includes the network: the sandbox has only its own loopback interface.
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        # Our own tiny init (_INIT_ARGV) is pid 1, so bwrap's monitor reaps it and exits only once
        # the kernel has emptied the PID namespace: no orphaned pid 1 is left for the host.
        "--as-pid-1",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]
    if not slot.drop_privileges:
        args += ["--uid", str(slot.uid), "--gid", str(slot.uid)]
    args += [
        *_system_mount_args(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        scratch,
        "--tmpfs",
        "/dev/shm",  # noqa: S108 - a private tmpfs inside the sandbox
        "--size",
        scratch,
        "--tmpfs",
        "/tmp",  # noqa: S108 - a private tmpfs inside the sandbox
        "--size",
        scratch,
        "--tmpfs",
        WORK_DIR,
    ]
    for source, target in read_only_binds:
        args += ["--ro-bind", str(source), target]
    for source, target in writable_binds:
        args += ["--bind", str(source), target]
    for fd, target, mode in data_binds:
        args += ["--perms", f"{mode:04o}", "--ro-bind-data", str(fd), target]
    # bubblewrap's own root and /dev are unbounded tmpfs mounts: make them read-only so that
    # only the size-capped mounts above take writes.
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORK_DIR, "--clearenv"]
    sandbox_env = {
        "PATH": _SANDBOX_PATH,
        "HOME": WORK_DIR,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",  # noqa: S108 - the sandbox's private tmpfs
        "USER": f"sandbox{slot.index}",
        **env,
    }
    for name, value in sandbox_env.items():
        args += ["--setenv", name, value]
    return args


class _RunningSandbox:
    """Reads a sandbox's output and status until it ends, stopping it at the limits."""

    def __init__(self, process: subprocess.Popen[bytes], status_read: int, limits: Limits) -> None:
        assert process.stdout is not None and process.stderr is not None  # noqa: S101 - PIPE
        self.process = process
        self.limits = limits
        self.status_read = status_read
        self.status: dict[str, object] = {}
        self.timed_out = False
        self.output_exceeded = False
        self._stdout_fd = process.stdout.fileno()
        self._stderr_fd = process.stderr.fileno()
        self._outputs = {self._stdout_fd: bytearray(), self._stderr_fd: bytearray()}
        self._status_buffer = bytearray()
        self._killed_at: float | None = None

    @property
    def stdout(self) -> bytes:
        return bytes(self._outputs[self._stdout_fd])

    @property
    def stderr(self) -> bytes:
        return bytes(self._outputs[self._stderr_fd])

    def collect(self) -> None:
        deadline = time.monotonic() + self.limits.wall_time_s
        with selectors.DefaultSelector() as selector:
            for fd in (*self._outputs, self.status_read):
                selector.register(fd, selectors.EVENT_READ)
            # The status pipe closes when bubblewrap exits, which it does once the PID
            # namespace is empty; the output pipes close when nothing holds them any more.
            while selector.get_map():
                now = time.monotonic()
                if self._killed_at is None and now >= deadline:
                    self.timed_out = True
                    self.kill()
                if self._killed_at is not None:
                    wait = _TEARDOWN_GRACE_S - (now - self._killed_at)
                    if wait <= 0:
                        return
                else:
                    wait = deadline - now
                for key, _ in selector.select(timeout=wait):
                    chunk = os.read(key.fd, _READ_CHUNK)
                    if not chunk:
                        selector.unregister(key.fd)
                    elif key.fd == self.status_read:
                        self._read_status(chunk)
                    else:
                        self._read_output(key.fd, chunk)

    def _read_status(self, chunk: bytes) -> None:
        self._status_buffer += chunk
        *complete, rest = self._status_buffer.split(b"\n")
        self._status_buffer = bytearray(rest)
        for line in complete:
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if isinstance(document, dict):
                    self.status.update(document)

    def _read_output(self, fd: int, chunk: bytes) -> None:
        buffer = self._outputs[fd]
        room = self.limits.max_output_bytes - len(buffer)
        buffer += chunk[: max(room, 0)]
        if len(chunk) > room and self._killed_at is None:
            self.output_exceeded = True
            self.kill()

    def kill(self) -> None:
        self._killed_at = time.monotonic()
        sandbox_init = self.status.get("child-pid")
        if isinstance(sandbox_init, int):
            # Killing pid 1 makes the kernel kill everything in the namespace; bubblewrap then
            # reaps it and exits, so nothing is orphaned.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(sandbox_init, signal.SIGKILL)
        else:
            # Still setting up: kill bubblewrap itself; --die-with-parent takes its child along.
            self._kill_group()

    def stop(self) -> None:
        """Make sure bubblewrap and its namespace are gone, then reap bubblewrap."""
        try:
            self.process.wait(timeout=_TEARDOWN_GRACE_S if self._killed_at else 0.5)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.process.wait()
        sandbox_init = self.status.get("child-pid")
        if isinstance(sandbox_init, int):
            _wait_until_dead(sandbox_init)

    def _kill_group(self) -> None:
        # bwrap leads its own process group (start_new_session).
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


# --- checks for operators and tests -------------------------------------------------------------


def preflight(config: SandboxConfig | None = None) -> None:
    """Raise SandboxUnavailable, saying what to fix, unless sandboxed runs work on this host."""
    config = config or SandboxConfig.from_env()
    _require_tool("bwrap")
    _require_tool("prlimit")
    try:
        with acquire_slot(config) as slot:
            outcome = run_sandboxed(
                slot, ["/bin/sh", "-c", "exit 0"], limits=Limits(wall_time_s=10)
            )
    except SandboxUnavailable as error:
        raise SandboxUnavailable(
            f"{error}\nUnprivileged user namespaces must be allowed: sysctl "
            "kernel.unprivileged_userns_clone=1 (Debian), user.max_user_namespaces>0, and on "
            "Ubuntu 24.04+ kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile "
            "for bwrap. In Docker, run the worker with a seccomp profile that allows "
            "unshare/clone of namespaces and mount (e.g. --security-opt seccomp=unconfined)."
        ) from error
    if outcome.exit_code != 0:
        raise SandboxUnavailable(
            "a trivial program failed inside the sandbox: "
            + outcome.stderr.decode(errors="replace").strip()
        )


def stray_report(config: SandboxConfig | None = None) -> StrayReport:
    """What sandboxes left behind: call it when no run is in progress."""
    config = config or SandboxConfig.from_env()
    pids: set[int] = set()
    if os.geteuid() == 0:
        slot_uids = range(config.uid_base, config.uid_base + config.slots)
        pids.update(pid for pid in _pids_of_uids(slot_uids) if _is_alive(pid))
    marker = _process_marker(config).encode()
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = Path(entry.path, "cmdline").read_bytes()
                    if marker in cmdline and _is_alive(int(entry.name)):
                        pids.add(int(entry.name))
    scratch = sorted(str(path) for path in config.scratch_root.glob("*"))
    runtime_prefix = str(config.runtime_dir)
    mounts = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            mount_point = line.split()[4]
            if mount_point.startswith(runtime_prefix) or mount_point in (WORK_DIR, BUILD_DIR):
                mounts.append(mount_point)
    return StrayReport(tuple(sorted(pids)), tuple(scratch), tuple(mounts))
