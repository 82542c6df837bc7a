"""The install path a new user takes: the Makefile refuses an unusable Python with one sentence
before any venv or pip command runs, and the lock files agree with pyproject.toml's ranges.
Nothing here installs anything: each make run happens in a scratch copy of the Makefile."""
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ("requirements.lock", "requirements-test.lock")

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _scratch_project(tmp_path: Path) -> Path:
    """A copy of what the Makefile's install rules depend on, with no .venv in it."""
    for name in ("Makefile", "pyproject.toml", *LOCKS):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _fake_python(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


def _make(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(project), *args],
                          capture_output=True, text=True, timeout=60)


def _own_lines(stderr: str) -> list[str]:
    """stderr without make's own '*** [...] Error 1' trailer."""
    return [line for line in stderr.splitlines() if line and "***" not in line]


@needs_make
@pytest.mark.parametrize("target", ["demo", "test", "install-test"])
def test_old_python_stops_with_one_sentence_before_pip(tmp_path, target):
    project = tmp_path / "project"
    project.mkdir()
    _scratch_project(project)
    fake = _fake_python(tmp_path, "echo 3.10")  # answers every question like Python 3.10 would

    result = _make(project, target, f"PYTHON={fake}")

    assert result.returncode != 0
    lines = _own_lines(result.stderr)
    assert lines == [f"make: {fake} is Python 3.10 but jaxviz needs 3.11 or newer: install it "
                     "with its venv module (Debian/Ubuntu: apt install python3.11 python3.11-venv) "
                     "and run e.g. make demo PYTHON=python3.11."]
    assert not (project / ".venv").exists()  # stopped before `-m venv`, let alone pip
    assert "pip" not in result.stdout


@needs_make
def test_missing_venv_module_is_named(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    _scratch_project(project)
    # A 3.12 whose `import venv, ensurepip` fails, as on Debian without python3.12-venv.
    fake = _fake_python(tmp_path, 'case "$*" in *version_info*) echo 3.12;; *) exit 1;; esac')

    result = _make(project, "demo", f"PYTHON={fake}")

    assert result.returncode != 0
    assert _own_lines(result.stderr) == [
        f"make: {fake} (Python 3.12) has no venv module: install it "
        "(Debian/Ubuntu: apt install python3.12-venv) and run make again."]
    assert not (project / ".venv").exists()


@needs_make
def test_python_that_does_not_run_is_named(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    _scratch_project(project)
    missing = tmp_path / "no-such-python"

    result = _make(project, "test", f"PYTHON={missing}")

    assert result.returncode != 0
    [line] = _own_lines(result.stderr)
    assert line.startswith(f"make: '{missing}' does not run as Python; jaxviz needs Python 3.11")
    assert not (project / ".venv").exists()


@needs_make
def test_the_python_running_this_suite_passes_the_check(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    _scratch_project(project)

    result = _make(project, "check-python", f"PYTHON={sys.executable}")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def _pins(lock: Path) -> dict[str, str]:
    """name -> version of every `name==version` line, markers dropped."""
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _declared(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(spec) for spec in deps]


@pytest.mark.parametrize("lock, extras", [("requirements.lock", ()),
                                          ("requirements-test.lock", ("test",))])
def test_lock_pins_every_declared_dependency_inside_its_range(lock, extras):
    pins = _pins(ROOT / lock)
    for req in _declared() + [r for extra in extras for r in _declared(extra)]:
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} lacks {req.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {req.name}=={pins[name]}, outside pyproject.toml's {req}: run `make lock`")


def test_locks_agree_hash_everything_and_leave_peers_out():
    runtime, test = (_pins(ROOT / name) for name in LOCKS)
    assert {name: test[name] for name in runtime} == runtime  # make test runs demo's versions
    for name in LOCKS:
        text = (ROOT / name).read_text()
        # pip --require-hashes needs a hash on every pin; a pin without one fails the install.
        entries = re.split(r"\n(?=[A-Za-z0-9])", text)
        for entry in entries:
            if re.match(r"^[A-Za-z0-9._-]+==", entry):
                assert "--hash=sha256:" in entry, f"{name}: no hash in {entry.splitlines()[0]}"
    for peer in _declared("peers"):
        assert canonicalize_name(peer.name) not in test, (
            f"{peer.name} is in the lock: the peers extra is installed by hand (make install-peers)")
