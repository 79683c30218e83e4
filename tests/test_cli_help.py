"""Every command explains itself, and the package runs as `python -m expdb`."""

import subprocess
import sys

import pytest

from expdb.cli import app, db_app


def command_paths() -> list[list[str]]:
    paths = [[command.name or command.callback.__name__] for command in app.registered_commands]
    paths += [["db", command.name] for command in db_app.registered_commands]
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_every_command_has_help(cli, path):
    result = cli(*path, "--help")
    assert result.code == 0
    assert "Usage" in result.out
    # A one-line summary of what it does, not just the option list.
    summary = result.out.split("Usage", 1)[1].splitlines()[2:6]
    assert any(line.strip(" │") for line in summary), result.out


def test_the_command_list_names_every_command(cli):
    result = cli("--help")
    for (name, *_) in command_paths():
        assert name in result.out


def test_runs_as_python_dash_m(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "expdb", "--help"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0
    assert "table" in result.stdout


def test_usage_errors_are_one_line(cli):
    result = cli("show")
    assert result.code == 2
    assert result.err.startswith("error: ") and result.err.count("\n") == 1


def test_an_internal_error_is_one_line_and_exit_1(cli, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something expdb did not expect\nwith a second line")

    monkeypatch.setattr("expdb.cards.selected_ids", broken)
    monkeypatch.delenv("EXPDB_DEBUG", raising=False)
    assert cli("new", "x").code == 0
    result = cli("list")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert result.err.startswith("internal error: RuntimeError: something expdb did not expect with a second line")
