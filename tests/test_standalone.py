"""The repository stands alone: a fresh clone passes its tests with nothing beside it, the
source tree runs without an install, and a wheel still carries the runners and migrations."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Runs pytest as `python -m pytest` would (the current directory first on sys.path), then
# says where the modules the tests used came from.
PYTEST_PROBE = """
import sys
import pytest
code = pytest.main(sys.argv[1:])
print("IMPORTED", *(sys.modules[name].__file__ for name in ("expdb", "expdb.migrations") if name in sys.modules))
sys.exit(code)
"""


def source_files() -> list[str]:
    """What a clone holds: the tracked files, and new files not ignored (about to be committed)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]  # not the deleted ones


def clone_into(target: Path) -> Path:
    for name in source_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target


def without_expdb() -> dict[str, str]:
    """The environment of a python that has expdb's dependencies but not expdb, for `python -S`:
    -S reads no .pth file (where an install of expdb hooks in), PYTHONPATH gives the dependencies."""
    # Not the checkout itself (nor tests/, which pytest adds), but a venv inside it, as .ci/run makes.
    checkout = (REPO, REPO / "tests")
    dependencies = [path for path in sys.path if path and Path(path).is_dir() and Path(path).resolve() not in checkout]
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("PYTHON", "PYTEST", "EXPDB_"))}
    return {**environment, "PYTHONPATH": os.pathsep.join(dependencies), "PYTHONDONTWRITEBYTECODE": "1"}


def test_a_fresh_clone_passes_its_tests_with_nothing_beside_it(tmp_path):
    clone = clone_into(tmp_path / "alone" / "expdb")
    result = subprocess.run(
        [
            sys.executable, "-S", "-c", PYTEST_PROBE,
            # Reads a real log from tests/data, creates a database through the migrations.
            "tests/test_cli_import.py::test_cascade_log_imports_diverged_with_the_nan_note",
            "-n", "0", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'basetemp'}",
        ],
        cwd=clone, env=without_expdb(), capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    imported = result.stdout.rsplit("IMPORTED ", 1)[1].split()
    assert imported == [str(clone / "expdb" / "__init__.py"), str(clone / "migrations" / "__init__.py")]


def test_the_source_tree_runs_without_an_install():
    probe = (
        "import expdb.launch, expdb.migrations, expdb.runners;"
        "print(expdb.runners.__file__, expdb.migrations.__file__, *expdb.launch.builtin_runners())"
    )
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=REPO, env=without_expdb(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(REPO / "runners" / "__init__.py"), str(REPO / "migrations" / "__init__.py"), "cvt_io"]

    result = subprocess.run(
        [sys.executable, "-S", "-m", "expdb", "--help"], cwd=REPO, env=without_expdb(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: expdb " in result.stdout  # the program's name, however it was started


def test_the_wheel_holds_the_runners_and_the_migrations_inside_the_package(tmp_path):
    clone = clone_into(tmp_path / "expdb")  # building writes build/ and *.egg-info beside the sources
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(clone)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("expdb-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"expdb/{name}" for name in source_files() if name.startswith(("runners/", "migrations/"))}
    assert {"expdb/runners/cvt_io.py", "expdb/migrations/env.py", "expdb/migrations/alembic.ini"} <= expected
    assert expected <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
