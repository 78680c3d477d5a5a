"""The sandboxed code runner: languages, annotator tests, limits, and hostile programs.

Every test runs real programs in bubblewrap. Without a usable sandbox the module is skipped,
unless ARBITER_SANDBOX_REQUIRED=1 (CI), in which case it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from annotation.tools import (
    Limits,
    RunStatus,
    SandboxBusy,
    SandboxUnavailable,
    TestOutcome,
    UnsupportedLanguage,
    available_languages,
    preflight,
    run_code,
)
from annotation.tools.code_runner import RunResult
from annotation.tools.sandbox import SandboxConfig, acquire_slot, stray_report
from tests.conftest import run_concurrently

REPO_ROOT = Path(__file__).resolve().parents[2]
UID_BASE = 61000
SLOTS = 4
SMALL = Limits(memory_bytes=256 * 1024 * 1024, max_processes=32)

# Sandboxed runs are timed (limits, teardown grace); beside another test on a 2-core machine they
# fail spuriously, so scripts/test.sh runs them in its serial pass.
pytestmark = pytest.mark.alone


@pytest.fixture(scope="module", autouse=True)
def sandbox_environment() -> Iterator[Path]:
    runtime_dir = Path(f"/tmp/arbiter-sandbox-tests-{os.getpid()}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARBITER_SANDBOX_RUNTIME_DIR", str(runtime_dir))
        patch.setenv("ARBITER_SANDBOX_UID_BASE", str(UID_BASE))
        patch.setenv("ARBITER_SANDBOX_SLOTS", str(SLOTS))
        try:
            preflight()
        except SandboxUnavailable as error:
            if os.environ.get("ARBITER_SANDBOX_REQUIRED") == "1":
                raise
            pytest.skip(f"no usable sandbox here: {error}")
        yield runtime_dir
    shutil.rmtree(runtime_dir, ignore_errors=True)


def run_python(code: str, **options: object) -> RunResult:
    options.setdefault("timeout_s", 5)
    options.setdefault("limits", SMALL)
    return run_code("python", code, **options)  # type: ignore[arg-type]


def run_json(code: str) -> Any:
    result = run_python(code)
    assert result.status == RunStatus.OK, result.stderr
    return json.loads(result.stdout)


def live_processes_with(marker: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid()]


def requires(language: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        language not in available_languages(), reason=f"{language} is not installed"
    )


# --- languages and annotator tests ---------------------------------------------------------------


def test_it_runs_python_with_stdin() -> None:
    result = run_python("name = input()\nprint(f'hello {name}')", stdin="arbiter\n")

    assert result.status == RunStatus.OK
    assert result.exit_code == 0
    assert result.stdout == "hello arbiter\n"
    assert result.tests is None
    assert result.duration_ms > 0


def test_it_reports_passing_and_failing_python_tests() -> None:
    code = "def add(a, b):\n    return a + b\n"

    passing = run_python(code, tests="assert add(2, 3) == 5")
    failing = run_python(code, tests="assert add(2, 3) == 6, 'wrong sum'")

    assert (passing.status, passing.tests) == (RunStatus.OK, TestOutcome.PASS)
    assert (failing.status, failing.tests) == (RunStatus.ERROR, TestOutcome.FAIL)
    assert "AssertionError: wrong sum" in failing.stderr


def test_it_reports_a_syntax_error_as_error_with_stderr() -> None:
    result = run_python("def broken(:\n    pass")

    assert result.status == RunStatus.ERROR
    assert result.exit_code == 1
    assert "SyntaxError" in result.stderr


@requires("javascript")
def test_it_runs_javascript_and_its_assert_tests() -> None:
    code = "function double(x) { return 2 * x; }\nconsole.log(double(21));"

    passing = run_code("javascript", code, tests="assert.strictEqual(double(2), 4);")
    failing = run_code("js", code, tests="assert.strictEqual(double(2), 5);")

    assert (passing.status, passing.tests, passing.stdout) == (RunStatus.OK, "pass", "42\n")
    assert (failing.status, failing.tests) == (RunStatus.ERROR, TestOutcome.FAIL)
    assert "AssertionError" in failing.stderr


@requires("cpp")
def test_it_compiles_and_runs_cpp_with_stdin() -> None:
    code = "#include <iostream>\nint main() { int n; std::cin >> n; std::cout << n * n << '\\n'; }"

    result = run_code("cpp", code, stdin="12\n")

    assert result.status == RunStatus.OK
    assert result.stdout == "144\n"


@requires("cpp")
def test_it_appends_cpp_tests_before_compiling() -> None:
    code = "int square(int n) { return n * n; }"

    passing = run_code("c++", code, tests="int main() { assert(square(3) == 9); }")
    failing = run_code("cpp", code, tests="int main() { assert(square(3) == 10); }")

    assert (passing.status, passing.tests) == (RunStatus.OK, TestOutcome.PASS)
    assert failing.tests == TestOutcome.FAIL
    # #line directives keep the annotator's own file names and line numbers.
    assert "tests.cpp:1" in failing.stderr


@requires("c")
def test_it_reports_a_c_compile_error_with_the_compiler_message() -> None:
    result = run_code("c", "int main(void) { return 0 }")

    assert result.status == RunStatus.ERROR
    assert result.message == "Compilation failed."
    assert "main.c:1" in result.stderr


def test_it_lists_only_installed_languages() -> None:
    languages = available_languages()

    assert "python" in languages
    assert set(languages) <= {"python", "javascript", "c", "cpp"}
    assert ("javascript" in languages) == any(
        os.path.exists(path) for path in ("/usr/bin/node", "/usr/local/bin/node")
    )


def test_it_rejects_an_unknown_language() -> None:
    with pytest.raises(UnsupportedLanguage, match="unknown language 'cobol'"):
        run_code("cobol", "DISPLAY 'HI'.")


def test_it_rejects_a_timeout_beyond_the_maximum() -> None:
    with pytest.raises(ValueError, match="may not exceed"):
        run_code("python", "print(1)", timeout_s=3600)


def test_result_serialises_to_plain_json() -> None:
    result = run_python("print('x')", tests="assert True")

    data = json.loads(json.dumps(result.to_dict()))

    assert data == {
        "status": "ok",
        "exit_code": 0,
        "stdout": "x\n",
        "stderr": "",
        "duration_ms": result.duration_ms,
        "tests": "pass",
        "message": "",
    }


def test_importing_the_runner_does_not_import_django() -> None:
    probe = (
        "import sys\n"
        "from annotation.tools import run_code, RunResult\n"
        "assert not any(name.split('.')[0] == 'django' for name in sys.modules)\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )

    assert completed.returncode == 0, completed.stderr


# --- refusing to run unsandboxed -----------------------------------------------------------------


def test_it_refuses_to_run_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARBITER_SANDBOX_BWRAP", "/nonexistent/bwrap")

    with pytest.raises(SandboxUnavailable, match="not an executable"):
        run_code("python", "print('must not run')")
    with pytest.raises(SandboxUnavailable, match="is not an executable file"):
        preflight()


def test_it_refuses_to_run_when_user_namespaces_are_denied(
    monkeypatch: pytest.MonkeyPatch, sandbox_environment: Path
) -> None:
    # Stands in for bwrap on a kernel that forbids unprivileged user namespaces.
    fake_bwrap = sandbox_environment / "denied-bwrap"
    fake_bwrap.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    fake_bwrap.chmod(0o755)
    monkeypatch.setenv("ARBITER_SANDBOX_BWRAP", str(fake_bwrap))

    with pytest.raises(SandboxUnavailable, match="No permissions to creating new namespace"):
        run_code("python", "print('must not run')")


def test_preflight_cli_exits_non_zero_with_the_reason() -> None:
    command = [sys.executable, "-m", "annotation.tools.preflight"]
    broken_env = {**os.environ, "ARBITER_SANDBOX_BWRAP": "/nonexistent/bwrap"}

    broken = subprocess.run(
        command, cwd=REPO_ROOT, env=broken_env, capture_output=True, text=True, check=False
    )
    working = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)

    assert broken.returncode == 1
    assert "ARBITER_SANDBOX_BWRAP=/nonexistent/bwrap" in broken.stderr
    assert working.returncode == 0, working.stderr
    assert working.stdout.startswith("sandbox ok")


# --- hostile programs ----------------------------------------------------------------------------


def test_it_cannot_reach_host_services_or_listening_ports() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host_port = listener.getsockname()[1]
        outcomes = run_json(
            "import json, socket\n"
            "outcomes = {}\n"
            f"for port in (5432, 6379, {host_port}):\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', port), timeout=1).close()\n"
            "        outcomes[port] = 'connected'\n"
            "    except OSError as error:\n"
            "        outcomes[port] = type(error).__name__\n"
            "print(json.dumps(outcomes))"
        )

    assert set(outcomes) == {"5432", "6379", str(host_port)}
    assert "connected" not in outcomes.values()


def test_it_cannot_resolve_names() -> None:
    result = run_python(
        "import socket\n"
        "for name in ('example.com', 'redis', 'db'):\n"
        "    try:\n"
        "        socket.getaddrinfo(name, 80)\n"
        "        print('resolved', name)\n"
        "    except OSError:\n"
        "        pass\n"
    )

    assert result.status == RunStatus.OK
    assert "resolved" not in result.stdout


def test_it_hides_the_app_and_host_files() -> None:
    targets = [
        str(REPO_ROOT / "config" / "settings.py"),
        str(REPO_ROOT),
        "/work",
        "/root",
        "/home",
        "/var",
        "/etc/shadow",
        "/etc/hostname",
        "/etc/hosts",
    ]

    visible = run_json(
        "import json, os\n"
        f"print(json.dumps([path for path in {targets!r} if os.path.exists(path)]))"
    )

    assert visible == []


def test_it_does_not_leak_the_host_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"secret-{uuid.uuid4()}"
    monkeypatch.setenv("ARBITER_TEST_SECRET", secret)

    seen = run_json(
        "import json, os\n"
        "print(json.dumps({\n"
        "    'pid1_environ': open('/proc/1/environ', 'rb').read().decode(),\n"
        "    'pid1_cmdline': open('/proc/1/cmdline', 'rb').read().decode(),\n"
        "    'environ': dict(os.environ),\n"
        "}))"
    )

    assert secret not in json.dumps(seen)
    assert seen["pid1_cmdline"] != Path("/proc/1/cmdline").read_bytes().decode()
    assert set(seen["environ"]) <= {"PATH", "HOME", "LANG", "TMPDIR", "USER", "PWD"}


def test_it_cannot_write_outside_its_private_directories() -> None:
    marker = f"arbiter-escape-{uuid.uuid4().hex}"
    attempts = ["/usr/lib", "/", "/etc", "/dev", "/proc", "/bin"]

    written = run_json(
        "import json, os\n"
        "written = []\n"
        f"for directory in {attempts!r} + ['/tmp', '/sandbox']:\n"
        "    try:\n"
        f"        open(os.path.join(directory, {marker!r}), 'w').write('x')\n"
        "        written.append(directory)\n"
        "    except OSError:\n"
        "        pass\n"
        "print(json.dumps(written))"
    )

    # /tmp and the work directory are the sandbox's own tmpfs mounts, invisible to the host.
    assert written == ["/tmp", "/sandbox"]
    assert not Path("/tmp", marker).exists()


def test_it_cannot_become_root_or_keep_capabilities() -> None:
    identity = run_json(
        "import json, os\n"
        "try:\n"
        "    os.setuid(0)\n"
        "    became_root = True\n"
        "except OSError:\n"
        "    became_root = False\n"
        "caps = [line.split()[1] for line in open('/proc/self/status') if line.startswith('Cap')]\n"
        "print(json.dumps({'uid': os.getuid(), 'root': became_root, 'caps': caps}))"
    )

    assert identity["root"] is False
    assert UID_BASE <= identity["uid"] < UID_BASE + SLOTS
    assert set(identity["caps"]) == {"0000000000000000"}


def seconds_to_run_nothing() -> float:
    """What starting and stopping one sandbox costs on this machine now: the baseline that a
    run's wall time is compared with, so that a busy machine does not fail the bounds."""
    started = time.monotonic()
    assert run_python("pass").status == RunStatus.OK
    return time.monotonic() - started


def test_it_contains_a_fork_bomb() -> None:
    overhead = seconds_to_run_nothing()
    started = time.monotonic()
    result = run_python(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        timeout_s=2,
    )

    assert result.status == RunStatus.TIMEOUT
    # The limit, plus twice the cost of an empty run (killing a process tree costs about as
    # much as starting one), plus a margin: a bomb that outlived its limit would blow past it.
    assert time.monotonic() - started < 2 + 2 * overhead + 2
    assert stray_report().processes == ()
    assert subprocess.run(["/bin/true"], check=False).returncode == 0


def test_it_caps_the_number_of_processes() -> None:
    result = run_python(
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    for _ in range(1000):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(children)\n"
        "os._exit(0)\n"
    )

    assert result.status == RunStatus.OK
    assert 0 < int(result.stdout) <= SMALL.max_processes


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "data = bytearray(4 * 1024**3)"),
        ("javascript", "const data = new ArrayBuffer(4 * 1024 ** 3);"),
    ],
)
def test_it_stops_a_4_gb_allocation(language: str, code: str) -> None:
    if language not in available_languages():
        pytest.skip(f"{language} is not installed")

    result = run_code(language, code, timeout_s=5, limits=SMALL)

    assert result.status == RunStatus.MEMORY_LIMIT
    assert "256 MiB" in result.message


@pytest.mark.parametrize(
    "code", ["while True:\n    pass", "import time\ntime.sleep(10**6)"], ids=["loop", "sleep"]
)
def test_it_times_out_a_program_that_never_ends(code: str) -> None:
    overhead = seconds_to_run_nothing()
    started = time.monotonic()
    result = run_python("print('started', flush=True)\n" + code, timeout_s=1)

    assert result.status == RunStatus.TIMEOUT
    assert result.exit_code is None
    assert result.stdout == "started\n"  # output before the limit is kept
    # Not before the limit; after it, no later than an empty run's cost twice over plus 1 s.
    assert 1.0 <= time.monotonic() - started < 1.0 + 2 * overhead + 1.0


def test_it_truncates_100_mb_of_output_at_1_mb() -> None:
    result = run_python(
        "import sys\nchunk = 'x' * 1024 * 1024\nfor _ in range(100):\n    sys.stdout.write(chunk)"
    )

    assert result.status == RunStatus.OUTPUT_LIMIT
    assert len(result.stdout) == 1024 * 1024
    assert "truncated at 1 MiB" in result.message


def test_it_kills_processes_that_detach_from_the_program() -> None:
    marker = f"arbiter-daemon-{uuid.uuid4().hex}"

    result = run_python(
        "import os, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}],\n"
        "                 start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)',"
        f" {marker!r}])\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\n"
        "print('detached')\n"
    )

    assert result.status == RunStatus.OK
    assert result.stdout == "detached\n"
    assert live_processes_with(marker.encode()) == []


def test_concurrent_runs_get_distinct_uids() -> None:
    def run_one() -> int:
        result = run_python("import os, time\nprint(os.getuid())\ntime.sleep(0.5)")
        return int(result.stdout)

    uids = run_concurrently([run_one] * SLOTS)
    assert sorted(uids) == list(range(UID_BASE, UID_BASE + SLOTS))


def test_it_says_so_when_every_slot_stays_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARBITER_SANDBOX_SLOT_WAIT_S", "0.2")
    config = SandboxConfig.from_env()

    with contextlib.ExitStack() as held:
        for _ in range(SLOTS):
            held.enter_context(acquire_slot(config, wait_s=0))
        with pytest.raises(SandboxBusy, match="sandbox slots stayed busy"):
            run_code("python", "print(1)")


def test_it_leaves_no_process_directory_or_mount_after_many_runs() -> None:
    mounts_before = Path("/proc/self/mountinfo").read_text().count("\n")
    if "cpp" in available_languages():
        assert run_code("cpp", "int main() { return 0; }").status == RunStatus.OK

    statuses = {run_python(f"print({index})").status for index in range(200)}

    assert statuses == {RunStatus.OK}
    report = stray_report()
    assert report.processes == ()
    assert report.scratch_dirs == ()
    assert report.mounts == ()
    assert Path("/proc/self/mountinfo").read_text().count("\n") == mounts_before


# --- seccomp and what the sandbox can see of the host ---------------------------------------

_SYSCALL_PROBE = """
import ctypes, json, subprocess, threading
NR = json.loads({numbers!r})
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(name, *args):
    ctypes.set_errno(0)
    result = libc.syscall(NR[name], *[ctypes.c_long(a) for a in args])
    return [result, ctypes.get_errno()]
# Arguments chosen so that without the filter the kernel answers otherwise (PTRACE_TRACEME and
# KEYCTL_GET_KEYRING_ID succeed, setns(-1) is EBADF, mount(NULL...) EFAULT, unshare ENOSPC).
out = {{
    "ptrace": call("ptrace", 0, 0, 0, 0),
    "process_vm_readv": call("process_vm_readv", 1, 0, 0, 0, 0, 0),
    "mount": call("mount", 0, 0, 0, 0, 0),
    "umount2": call("umount2", 0, 0),
    "keyctl": call("keyctl", 0, -3, 0),
    "add_key": call("add_key", 0, 0, 0, 0, 0),
    "bpf": call("bpf", 0, 0, 0),
    "perf_event_open": call("perf_event_open", 0, 0, -1, -1, 0),
    "userfaultfd": call("userfaultfd", 0),
    "unshare(user)": call("unshare", 0x10000000),
    "unshare(net)": call("unshare", 0x40000000),
    "setns": call("setns", -1, 0),
    "clone(newnet)": call("clone", 0x40000000 | 17, 0, 0, 0, 0),
}}
thread = threading.Thread(target=lambda: None)
thread.start()
thread.join()
out["threads and processes"] = subprocess.run(["/bin/echo", "ok"], capture_output=True).stdout
print(json.dumps({{k: v if isinstance(v, list) else v.decode() for k, v in out.items()}}))
"""


def test_the_seccomp_filter_refuses_kernel_interfaces_no_language_needs() -> None:
    from annotation.tools.seccomp import syscall_numbers

    numbers = syscall_numbers()
    if numbers is None:
        pytest.skip("no seccomp filter for this machine")
    result = run_json(_SYSCALL_PROBE.format(numbers=json.dumps(numbers)))
    assert result.pop("threads and processes") == "ok\n"
    refused = {name: answer for name, answer in result.items() if answer == [-1, 1]}  # EPERM
    assert refused == result


def test_programs_still_run_threads_and_compile_under_the_filter() -> None:
    result = run_code(
        "javascript",
        "const { Worker } = require('worker_threads');"
        "new Worker('require(\"worker_threads\").parentPort.postMessage(6*7)', { eval: true })"
        ".on('message', (m) => console.log(m));",
    )
    assert (result.status, result.stdout.strip()) == (RunStatus.OK, "42")


@requires("c")
def test_the_sandbox_shows_no_host_runtime_path_in_its_mounts(sandbox_environment) -> None:
    python = run_python("print(open('/proc/self/mountinfo').read())")
    c = run_code(
        "c",
        '#include <stdio.h>\nint main(void) { FILE *f = fopen("/proc/self/mountinfo", "r");'
        " char b[16384]; size_t n = fread(b, 1, sizeof b, f); fwrite(b, 1, n, stdout); }",
    )
    for result in (python, c):
        assert result.status == RunStatus.OK, result.stderr
        assert "/etc/passwd" in result.stdout
        assert str(sandbox_environment) not in result.stdout


def test_the_filter_is_a_whole_bpf_program_for_known_machines_only() -> None:
    from annotation.tools.seccomp import filter_program

    for machine in ("x86_64", "aarch64"):
        program = filter_program(machine)
        assert program is not None and len(program) % 8 == 0
        end = len(program)
        last_three = [struct.unpack("<HBBI", program[i : i + 8]) for i in range(end - 24, end, 8)]
        # RET ALLOW, RET ERRNO(EPERM), RET ERRNO(ENOSYS)
        assert last_three == [(6, 0, 0, 0x7FFF0000), (6, 0, 0, 0x50001), (6, 0, 0, 0x50026)]
    assert filter_program("s390x") is None
