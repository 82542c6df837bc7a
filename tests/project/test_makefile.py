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

ROOT = Path(__file__).resolve().parents[2]
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


# ---- today's JAX: the ranges, the newest-releases run, CI -----------------------------------

@pytest.mark.parametrize("name", ["jax", "jaxlib"])
def test_ranges_admit_the_jax_releases_tested(name):
    """Reproduces: pyproject.toml stopped at jax<0.11, so `pip install jaxviz` next to
    jax 0.12 downgraded the user's JAX or failed to resolve. The range covers the lock's
    0.10.2 up to the 0.12 releases `make test-latest` ran (docs/versions.md)."""
    [req] = [r for r in _declared() if canonicalize_name(r.name) == name]
    for version in ("0.10.2", "0.11.2", "0.12.0", "0.12.0.1", "0.12.1"):
        assert req.specifier.contains(version), f"pyproject.toml's {req} refuses {name} {version}"
    assert not req.specifier.contains("0.13.0"), f"{req}: 0.13 has not been tested"


def _fake_exe(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


@needs_make
def test_latest_python_is_found_among_pyenv_installs(tmp_path):
    """Reproduces: `make test-latest LATEST_PYTHON=python3.13` failed where python3.13 is not
    on PATH or is a pyenv shim of an inactive version (as on CI), although pyenv had it
    installed. A name that does not run is looked up in $PYENV_ROOT/versions."""
    project = tmp_path / "project"
    project.mkdir()
    _scratch_project(project)
    shim = _fake_exe(tmp_path / "shims" / "python3.77", "exit 127")  # pyenv: not active
    real = _fake_exe(tmp_path / "pyenv" / "versions" / "3.77.1" / "bin" / "python3.77", "exit 0")
    env = {"PATH": f"{shim.parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "PYENV_ROOT": str(tmp_path / "pyenv")}

    def latest(name):
        out = subprocess.run(["make", "--no-print-directory", "-C", str(project),
                              "latest-python", f"LATEST_PYTHON={name}"],
                             capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()
    assert latest("python3.77") == str(real)
    assert latest(str(real)) == str(real)
    assert latest("python3.78") == "python3.78"  # nowhere: check-python then names it


def test_ci_runs_the_lock_then_the_newest_releases_and_keeps_a_failure(tmp_path):
    """Reproduces: .ci/run ran only `make test`, so a JAX release that breaks jaxviz reached
    users first. Now both runs happen, in order, and a failure of the first still fails CI."""
    calls = tmp_path / "calls"
    _fake_exe(tmp_path / "bin" / "make", f'echo "$*" >> {calls}\n'
              'case "$*" in *latest-python*) echo /x/python3.13;; *test-latest*) exit 0;; '
              '*test*) exit 3;; esac')
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(["bash", str(ROOT / ".ci" / "run")], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 3, out.stdout + out.stderr
    ran = calls.read_text().splitlines()
    assert ran[0] == "test" and ran[-1] == "test-latest LATEST_PYTHON=python3.13", ran
    assert "/x/python3.13" in out.stdout  # which interpreter the second run used
