"""Every command explains itself, and the package runs as `python -m expdb`."""

import os
import re
import subprocess
import sys

import pytest

from expdb.cli import app, db_app, metric_app


def command_paths() -> list[list[str]]:
    paths = [[command.name or command.callback.__name__] for command in app.registered_commands]
    paths += [["db", command.name] for command in db_app.registered_commands]
    paths += [["metric", command.name] for command in metric_app.registered_commands]
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


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_help_shows_every_sentence_whole_at_80_columns(cli, monkeypatch, path):
    """Each command's and each option's help, `[default: ...]` asides and all, is in its --help
    complete: nothing eaten as markup, nothing cut with an ellipsis."""
    from typer.main import get_command

    monkeypatch.setenv("COLUMNS", "80")
    result = cli(*path, "--help")
    command = get_command(app)
    for name in path:
        command = command.commands[name]
    shown = re.sub(r"(\w)- (\w)", r"\1-\2", words(result.out))  # "half-" / "width": one word again
    assert words(command.help.split("\f")[0]) in shown
    for param in command.params:
        if getattr(param, "help", None) and not getattr(param, "hidden", False):
            assert words(param.help) in shown, param.name
    assert "…" not in result.out and "<bool>" not in result.out
    assert all(len(line) <= 80 for line in result.out.splitlines())


@pytest.mark.parametrize("group", [[], ["db"], ["metric"]], ids=lambda group: " ".join(["expdb", *group]))
def test_the_command_lists_have_whole_summaries(cli, monkeypatch, group):
    monkeypatch.setenv("COLUMNS", "80")
    listed = cli(*group, "--help").out.split("Commands:")[1].splitlines()
    summaries = [line.split(None, 1)[1] for line in listed if line.strip()]
    assert len(summaries) == len({path[len(group)] for path in command_paths() if path[: len(group)] == group})
    assert all(summary.endswith(".") and not summary.endswith("...") for summary in summaries), summaries


def test_version(cli):
    import expdb

    result = cli("--version")
    assert result.code == 0 and result.out == f"expdb {expdb.__version__}\n"


def test_shell_completion_completes_commands(tmp_path):
    """What the script `expdb --install-completion` installs asks: the completions of what is typed."""
    env = {**os.environ, "_EXPDB_COMPLETE": "complete_bash", "COMP_WORDS": "expdb ta", "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-m", "expdb"], capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert result.returncode == 0
    assert result.stdout.split() == ["tag", "table"]
