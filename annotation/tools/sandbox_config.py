"""The sandbox's settings, limits and results, read from the environment (no I/O but that).

See `annotation.tools.sandbox` for how a run is isolated.
"""
from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

MIB = 1024 * 1024

WORK_DIR = "/sandbox"
BUILD_DIR = "/build"

# Extra processes bubblewrap needs in the slot's uid: its monitor and the namespace's pid 1.
BWRAP_OWN_PROCESSES = 3
READ_CHUNK = 64 * 1024
# After a kill, how long we wait for the pipes and pid 1 to go away before giving up on them.
TEARDOWN_GRACE_S = 3.0
SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
SYSTEM_ETC_FILES = ("/etc/ld.so.cache", "/etc/alternatives")
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# pid 1 of every sandbox: a shell that starts the program and waits for it. The program is not
# pid 1 itself because pid 1 ignores default-action signals (SIGABRT from assert, SIGXCPU...).
# A background job's stdin would be /dev/null, hence the detour through fd 3.
INIT_ARGV = ("/bin/sh", "-c", 'exec 3<&0; "$@" 0<&3 3<&- & wait $!', "sandbox-init")


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
