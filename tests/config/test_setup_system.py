"""`make test` sets the machine up through scripts/setup_system.sh: checked here in its
`--check` mode (which changes nothing) and, without root, in its default mode."""

from __future__ import annotations

import os
import shutil
import subprocess  # noqa: S404 - fixed argument lists
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "setup_system.sh"


def _path_without(tmp_path: Path, *hidden: str) -> str:
    """A PATH holding every command of this machine except `hidden` (a machine that lacks them)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = bin_dir / name
            source = Path(directory) / name
            if name in hidden or target.exists() or not os.access(source, os.X_OK):
                continue
            target.symlink_to(source)
    return str(bin_dir)


def _run(*args: str, path: str | None = None, user: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}
    if path is not None:
        env["PATH"] = path
    argv = [str(SCRIPT), *args]
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(  # noqa: S603
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_check_mode_passes_on_a_machine_that_has_everything():
    result = _run("--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "packages: all present" in result.stdout
    assert "PostgreSQL: running" in result.stdout
    assert "Redis: running" in result.stdout


def test_check_mode_names_the_missing_packages_and_the_command_that_installs_them(tmp_path):
    result = _run("--check", path=_path_without(tmp_path, "bwrap", "chromium"))
    assert result.returncode == 1
    assert "missing packages: bubblewrap chromium" in result.stdout
    assert "apt-get update && apt-get install -y bubblewrap chromium" in result.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root")
def test_without_root_it_installs_nothing_and_prints_what_to_run():
    # pytest's tmp_path sits under a directory only root may enter; `nobody` needs to read it.
    with tempfile.TemporaryDirectory() as readable:
        Path(readable).chmod(0o755)
        result = _run(path=_path_without(Path(readable), "bwrap"), user="nobody")
    assert result.returncode == 1
    assert "needs these system packages: bubblewrap" in result.stderr
    assert "Run, as root on Debian/Ubuntu:  apt-get update && apt-get install -y bubblewrap" in (
        result.stderr
    )


def test_make_test_and_ci_run_set_the_machine_up_through_the_one_script():
    makefile = (ROOT / "Makefile").read_text()
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert test_recipe.index("scripts/setup_system.sh") < test_recipe.index("scripts/test.sh")
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("make test")


def test_make_run_writes_its_env_file_readable_by_its_owner_only(tmp_path):
    import stat
    import sys

    target = tmp_path / ".env"
    script = ROOT / "scripts" / "write_env.sh"
    subprocess.run([str(script), sys.executable, str(target)], check=True, timeout=60)  # noqa: S603
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    lines = dict(line.split("=", 1) for line in target.read_text().splitlines())
    assert len(lines["SECRET_KEY"]) >= 50 and lines["DEBUG"] == "true"
    assert "scripts/write_env.sh" in (ROOT / "scripts" / "run.sh").read_text()
