"""Run an annotator's snippet (Python, JavaScript, C or C++) in the sandbox.

`run_code` is what the workspace's Celery task calls. It is plain Python with no Django import,
safe to call from several processes and threads at once (each run claims a sandbox slot), and it
never runs anything outside the sandbox: a host that cannot isolate code raises
SandboxUnavailable.

Tests written by the annotator run as part of the program:
- Python: appended after the code (plain `assert` statements).
- JavaScript: appended in a block that binds `assert` to node's assert module.
- C and C++: appended to the source before compiling, with <assert.h>/<cassert> included, so
  the code supplies functions and the tests supply `main`.
The tests pass when the whole program exits with status 0.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from functools import cache

from annotation.tools.sandbox import (
    BUILD_DIR,
    MIB,
    Limits,
    Outcome,
    SandboxConfig,
    SandboxUnavailable,
    acquire_slot,
    preflight,
    run_sandboxed,
)

MAX_SOURCE_BYTES = 256 * 1024
MAX_STDIN_BYTES = 8 * MIB
_COMPILE_LIMITS = Limits(wall_time_s=20.0, memory_bytes=1024 * MIB, max_processes=32)
_PROGRAM_NAME = "program"

# Messages that mean the program hit the memory limit (the tail of stderr is searched).
_OUT_OF_MEMORY_MARKERS = (
    b"MemoryError",
    b"std::bad_alloc",
    b"JavaScript heap out of memory",
    b"Array buffer allocation failed",
    b"Fatal process out of memory",
    b"Cannot allocate memory",
    b"out of memory",
)


class RunStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    KILLED = "killed"


class TestOutcome(StrEnum):
    __test__ = False  # not a pytest test class

    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"


class UnsupportedLanguage(ValueError):
    """The language is unknown, or its toolchain is not installed on this server."""


@dataclass(frozen=True)
class RunResult:
    status: RunStatus
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: int
    tests: TestOutcome | None = None
    # Why the sandbox stopped the program, for the annotator; empty when it ended by itself.
    message: str = ""

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["status"] = self.status.value
        data["tests"] = self.tests.value if self.tests else None
        return data


@dataclass(frozen=True)
class Toolchain:
    language: str
    source_name: str
    # Compiled languages build into BUILD_DIR in a first sandbox; the program is then copied,
    # read-only, to the same path in a second one and run there.
    compile_argv: tuple[str, ...] | None
    run_argv: tuple[str, ...]

    def program_argv(self, limits: Limits) -> tuple[str, ...]:
        if self.language == "javascript":
            # A heap limit below RLIMIT_DATA makes V8 fail with a clear out-of-memory message.
            heap_mb = max(limits.memory_bytes // MIB // 2, 16)
            return (self.run_argv[0], f"--max-old-space-size={heap_mb}", *self.run_argv[1:])
        return self.run_argv


def _first_executable(*candidates: str) -> str | None:
    # Only programs under /usr are visible inside the sandbox.
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if real.startswith("/usr/") and os.access(real, os.X_OK):
            return candidate
    return None


@cache
def _toolchains() -> dict[str, Toolchain]:
    found: dict[str, Toolchain] = {}
    python = os.environ.get("ARBITER_SANDBOX_PYTHON") or _first_executable(
        "/usr/bin/python3", "/usr/local/bin/python3"
    )
    if python:
        # -I: ignore PYTHON* variables and user site; -B: no .pyc; -u: keep output on timeout.
        run_python = (python, "-I", "-B", "-u", "main.py")
        found["python"] = Toolchain("python", "main.py", None, run_python)
    node = _first_executable("/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs")
    if node:
        found["javascript"] = Toolchain("javascript", "main.js", None, (node, "main.js"))
    program = f"{BUILD_DIR}/{_PROGRAM_NAME}"
    gcc = _first_executable("/usr/bin/gcc", "/usr/local/bin/gcc")
    if gcc:
        compile_c = (gcc, "-O2", "-std=gnu17", "-pipe", "-o", program, "main.c", "-lm")
        found["c"] = Toolchain("c", "main.c", compile_c, (program,))
    gxx = _first_executable("/usr/bin/g++", "/usr/local/bin/g++")
    if gxx:
        compile_cpp = (gxx, "-O2", "-std=gnu++20", "-pipe", "-o", program, "main.cpp", "-lm")
        found["cpp"] = Toolchain("cpp", "main.cpp", compile_cpp, (program,))
    return found


_ALIASES = {
    "python": "python",
    "python3": "python",
    "py": "python",
    "javascript": "javascript",
    "js": "javascript",
    "node": "javascript",
    "nodejs": "javascript",
    "c": "c",
    "cpp": "cpp",
    "c++": "cpp",
    "cxx": "cpp",
}
_LANGUAGE_ORDER = ("python", "javascript", "c", "cpp")


def available_languages() -> list[str]:
    """Languages whose toolchain is installed here (the sandbox itself is not checked)."""
    toolchains = _toolchains()
    return [language for language in _LANGUAGE_ORDER if language in toolchains]


def _toolchain_for(language: str) -> Toolchain:
    canonical = _ALIASES.get(language.strip().lower())
    if canonical is None:
        raise UnsupportedLanguage(f"unknown language {language!r}")
    toolchain = _toolchains().get(canonical)
    if toolchain is None:
        raise UnsupportedLanguage(f"{canonical} is not installed on this server")
    return toolchain


def _source_with_tests(language: str, code: str, tests: str) -> str:
    if not tests.strip():
        return code
    if language == "python":
        return f"{code.rstrip()}\n\n\n{tests}\n"
    if language == "javascript":
        # A block of its own, so `assert` never clashes with a binding in the code.
        return f"{code}\n;{{\nconst assert = require('node:assert');\n{tests}\n}}\n"
    header, suffix = ("<assert.h>", "c") if language == "c" else ("<cassert>", "cpp")
    # #line keeps compiler messages pointing at the annotator's own line numbers.
    return (
        f'#include {header}\n#line 1 "main.{suffix}"\n{code}\n#line 1 "tests.{suffix}"\n{tests}\n'
    )


_sandbox_checked = threading.Event()


def _ensure_sandbox(config: SandboxConfig) -> None:
    # One real probe per process; it raises SandboxUnavailable until the host is fixed.
    if not _sandbox_checked.is_set():
        preflight(config)
        _sandbox_checked.set()


def run_code(
    language: str,
    code: str,
    *,
    stdin: str = "",
    tests: str = "",
    timeout_s: float | None = None,
    limits: Limits | None = None,
) -> RunResult:
    """Compile if needed and run `code` in the sandbox; never runs anything unsandboxed.

    `timeout_s` defaults to ARBITER_SANDBOX_TIMEOUT_S (10 s) and may not exceed
    ARBITER_SANDBOX_MAX_TIMEOUT_S (30 s). `limits` overrides the defaults from the environment.
    Raises UnsupportedLanguage, ValueError for oversized input, SandboxUnavailable when the host
    cannot isolate code, and SandboxBusy when no slot frees up in time.
    """
    toolchain = _toolchain_for(language)
    source = _source_with_tests(toolchain.language, code, tests).encode()
    if len(source) > MAX_SOURCE_BYTES:
        raise ValueError(f"the program is larger than {MAX_SOURCE_BYTES // 1024} KiB")
    stdin_bytes = stdin.encode()
    if len(stdin_bytes) > MAX_STDIN_BYTES:
        raise ValueError(f"stdin is larger than {MAX_STDIN_BYTES // MIB} MiB")
    limits = _limits_for(toolchain, limits or Limits.from_env(), timeout_s)
    config = SandboxConfig.from_env()
    _ensure_sandbox(config)
    with acquire_slot(config) as slot:
        files = {toolchain.source_name: source}
        if toolchain.compile_argv is None:
            outcome = run_sandboxed(
                slot,
                toolchain.program_argv(limits),
                limits=limits,
                files=files,
                stdin=stdin_bytes,
            )
            return _result(outcome, limits, tests)
        with slot.scratch_dir() as build_dir:
            compile_limits = _COMPILE_LIMITS.replace(max_output_bytes=limits.max_output_bytes)
            compiled = run_sandboxed(
                slot,
                toolchain.compile_argv,
                limits=compile_limits,
                files=files,
                writable_binds=[(build_dir, BUILD_DIR)],
            )
            if compiled.exit_code != 0:
                return _result(compiled, compile_limits, tests, compiling=True)
            # Copied in rather than bound, so the program sees no host path of its build.
            built = (build_dir / _PROGRAM_NAME).read_bytes()
            outcome = run_sandboxed(
                slot,
                toolchain.program_argv(limits),
                limits=limits,
                stdin=stdin_bytes,
                executables={f"{BUILD_DIR}/{_PROGRAM_NAME}": built},
            )
        result = _result(outcome, limits, tests)
        return replace(result, duration_ms=compiled.duration_ms + outcome.duration_ms)


def _limits_for(toolchain: Toolchain, limits: Limits, timeout_s: float | None) -> Limits:
    if timeout_s is not None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        maximum = float(os.environ.get("ARBITER_SANDBOX_MAX_TIMEOUT_S") or 30)
        if timeout_s > maximum:
            raise ValueError(f"timeout_s may not exceed {maximum:g} s")
        limits = limits.replace(wall_time_s=timeout_s)
    if toolchain.language == "javascript":
        # V8 reserves gigabytes of address space it never touches; RLIMIT_DATA (memory_bytes)
        # still caps the memory it actually writes.
        limits = limits.replace(address_space_bytes=max(4 * limits.memory_bytes, 2048 * MIB))
    return limits


def _result(outcome: Outcome, limits: Limits, tests: str, *, compiling: bool = False) -> RunResult:
    status, message = _classify(outcome, limits)
    if compiling and status is RunStatus.ERROR:
        message = "Compilation failed."
    elif compiling:
        message = f"Compilation stopped: {message}"
    tests_outcome = None
    if tests.strip():
        tests_outcome = TestOutcome.PASS if status is RunStatus.OK else TestOutcome.FAIL
    return RunResult(
        status=status,
        exit_code=outcome.exit_code,
        stdout=_text(outcome.stdout),
        stderr=_text(outcome.stderr),
        duration_ms=outcome.duration_ms,
        tests=tests_outcome,
        message=message,
    )


def _text(output: bytes) -> str:
    # PostgreSQL's jsonb refuses NUL, which a program may well print: shown as U+FFFD, like
    # any other byte that is not text.
    return output.decode(errors="replace").replace("\x00", "\ufffd")


def _classify(outcome: Outcome, limits: Limits) -> tuple[RunStatus, str]:
    if outcome.output_exceeded:
        limit = _describe_bytes(limits.max_output_bytes)
        return RunStatus.OUTPUT_LIMIT, f"Output passed {limit}; stopped and truncated at {limit}."
    if outcome.timed_out or outcome.term_signal == signal.SIGXCPU:
        return RunStatus.TIMEOUT, f"Stopped at the {limits.wall_time_s:g} s time limit."
    if outcome.exit_code == 0:
        return RunStatus.OK, ""
    if any(marker in outcome.stderr[-8192:] for marker in _OUT_OF_MEMORY_MARKERS):
        limit = _describe_bytes(limits.memory_bytes)
        return RunStatus.MEMORY_LIMIT, f"The program ran out of memory (limit {limit})."
    if outcome.term_signal is not None:
        if outcome.term_signal == signal.SIGABRT:
            # assert(), std::terminate and uncaught C++ exceptions: the program's own decision.
            return RunStatus.ERROR, "The program aborted (SIGABRT)."
        if outcome.term_signal == signal.SIGXFSZ:
            limit = _describe_bytes(limits.max_file_bytes)
            return RunStatus.KILLED, f"The program wrote a file larger than {limit}."
        try:
            name = signal.Signals(outcome.term_signal).name
        except ValueError:
            name = f"signal {outcome.term_signal}"
        return RunStatus.KILLED, f"The program was killed by {name}."
    return RunStatus.ERROR, ""


def _describe_bytes(size: int) -> str:
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size} bytes"


__all__ = [
    "RunResult",
    "RunStatus",
    "SandboxUnavailable",
    "TestOutcome",
    "UnsupportedLanguage",
    "available_languages",
    "run_code",
]
