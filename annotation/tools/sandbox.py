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

Settings and result types live in `sandbox_config`; host checks, slots and process handling
in `sandbox_host`. This module runs a program, and is the one callers import.
"""
from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess  # noqa: S404 - we start bubblewrap with fixed argument lists, never a shell
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from annotation.tools import seccomp
from annotation.tools.sandbox_config import (
    BUILD_DIR,
    BWRAP_OWN_PROCESSES,
    INIT_ARGV,
    MIB,
    READ_CHUNK,
    SANDBOX_PATH,
    TEARDOWN_GRACE_S,
    WORK_DIR,
    Limits,
    Outcome,
    SandboxBusy,
    SandboxConfig,
    SandboxUnavailable,
    Slot,
    StrayReport,
)
from annotation.tools.sandbox_host import (
    acquire_slot,
    count_processes_of_uid,
    is_alive,
    kill_uid,
    memfd,
    pids_of_uids,
    process_marker,
    require_tool,
    sandbox_sweep,
    system_mount_args,
    wait_until_dead,
)

__all__ = [
    "BUILD_DIR",
    "Limits",
    "MIB",
    "Outcome",
    "SandboxBusy",
    "SandboxConfig",
    "SandboxUnavailable",
    "StrayReport",
    "acquire_slot",
    "preflight",
    "run_sandboxed",
    "sandbox_sweep",
    "stray_report",
]

# --- running -------------------------------------------------------------------------------------


# Stays long: every descriptor the child gets is opened and closed in one try/finally, so that
# none can leak whatever fails.
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
    prlimit = require_tool("prlimit")
    bwrap = require_tool("bwrap")
    extra_processes = BWRAP_OWN_PROCESSES
    if not slot.drop_privileges:
        # RLIMIT_NPROC counts every process of the real uid, and here that is the server's own.
        extra_processes += count_processes_of_uid(os.getuid())

    # Everything the child needs is passed as a descriptor; the parent's copies are closed as
    # soon as bubblewrap has started (an open write end would keep the status pipe from ending).
    child_fds: list[int] = []
    status_read = -1
    try:
        file_args, data_binds, seccomp_args = _child_descriptors(
            slot, child_fds, stdin=stdin, files=files or {}, executables=executables or {}
        )
        stdin_fd = child_fds[0]
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
            *INIT_ARGV,
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
        kill_uid(slot.uid)
    killed_by_us = run.timed_out or run.output_exceeded
    if not killed_by_us and "exit-code" not in run.status:
        # bubblewrap reports an exit code only once the program was actually executed.
        detail = run.stderr.decode(errors="replace").strip() or f"exit {process.returncode}"
        raise SandboxUnavailable(f"bubblewrap could not set up the sandbox: {detail}")
    exit_code = None if killed_by_us else int(run.status["exit-code"])  # type: ignore[call-overload]
    return Outcome(
        exit_code, run.stdout, run.stderr, run.timed_out, run.output_exceeded, duration_ms
    )


def _child_descriptors(
    slot: Slot,
    child_fds: list[int],
    *,
    stdin: bytes,
    files: Mapping[str, bytes],
    executables: Mapping[str, bytes],
) -> tuple[list[str], list[tuple[int, str, int]], list[str]]:
    """Memory files for all the child reads (stdin first, then the work files, /etc files,
    programs and the seccomp filter), appended to `child_fds`, which the caller closes whatever
    happens; returns the `--file` arguments, the data binds and the `--seccomp` arguments."""
    child_fds.append(memfd("arbiter-stdin", stdin))
    file_args: list[str] = []
    for name, content in files.items():
        child_fds.append(memfd("arbiter-file", content))
        file_args += ["--file", str(child_fds[-1]), f"{WORK_DIR}/{name}"]
    # Contents bound read-only from descriptors rather than host files: the sandbox's
    # /proc/self/mountinfo then names no host path under the runtime directory.
    data_binds: list[tuple[int, str, int]] = []
    for target, name in (("/etc/passwd", "passwd"), ("/etc/group", "group")):
        child_fds.append(memfd("arbiter-etc", (slot.config.etc_dir / name).read_bytes()))
        data_binds.append((child_fds[-1], target, 0o444))
    for target, content in executables.items():
        child_fds.append(memfd("arbiter-program", content))
        data_binds.append((child_fds[-1], target, 0o555))
    seccomp_args: list[str] = []
    program = seccomp.filter_program()
    if program is not None:
        child_fds.append(memfd("arbiter-seccomp", program))
        seccomp_args = ["--seccomp", str(child_fds[-1])]
    return file_args, data_binds, seccomp_args


# Stays long: the whole bubblewrap command line in the order bubblewrap applies it, audited in
# one place.
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
        process_marker(slot.config),
        # --unshare-all includes the network: the sandbox has only its own loopback interface.
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        # Our own tiny init (INIT_ARGV) is pid 1, so bwrap's monitor reaps it and exits only once
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
        *system_mount_args(),
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
        "PATH": SANDBOX_PATH,
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
                    wait = TEARDOWN_GRACE_S - (now - self._killed_at)
                    if wait <= 0:
                        return
                else:
                    wait = deadline - now
                for key, _ in selector.select(timeout=wait):
                    chunk = os.read(key.fd, READ_CHUNK)
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
            # The whole grace even for a run that ended by itself: its status pipe has closed,
            # so bubblewrap is exiting, but on a busy machine that can take longer than half a
            # second, and killing it then turned a finished run into SandboxUnavailable.
            self.process.wait(timeout=TEARDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.process.wait()
        sandbox_init = self.status.get("child-pid")
        if isinstance(sandbox_init, int):
            wait_until_dead(sandbox_init)

    def _kill_group(self) -> None:
        # bwrap leads its own process group (start_new_session).
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


# --- checks for operators and tests -------------------------------------------------------------


def preflight(config: SandboxConfig | None = None) -> None:
    """Raise SandboxUnavailable, saying what to fix, unless sandboxed runs work on this host."""
    config = config or SandboxConfig.from_env()
    require_tool("bwrap")
    require_tool("prlimit")
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
        pids.update(pid for pid in pids_of_uids(slot_uids) if is_alive(pid))
    marker = process_marker(config).encode()
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = Path(entry.path, "cmdline").read_bytes()
                    if marker in cmdline and is_alive(int(entry.name)):
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
