"""`expdb report` from the command line."""

import shutil
import subprocess

import pytest

from expdb.cards import add_note, create_card
from expdb.db import Database
from expdb.runs import begin_run


def study() -> None:
    with Database(create=True) as db:
        for name, parent, lr in (("base", None, 0.1), ("variant", "base", 0.2)):
            create_card(db, name, {"lr": lr}, parent=parent, tags=["study"])
            add_note(db, name, f"why {name}")
            run = begin_run(db, name, device="cpu")
            for step in range(20):
                run.log(step, loss=1.0 / (step + 1 + lr))
            run.summary(iou50=0.3 + lr)
            run.end("finished")


def test_report_writes_markdown_with_plots_beside_it(cli, workdir):
    study()
    (workdir / "reports").mkdir()
    result = cli("report", "--tag", "study", "-o", "reports/study.md", "--baseline", "base")
    assert result.code == 0, result.err
    assert "wrote reports/study.md" in result.out and "wrote reports/study_loss.png" in result.out
    text = (workdir / "reports" / "study.md").read_text()
    assert "why variant" in text and "![loss](study_loss.png)" in text and "| variant |" in text


def test_report_as_a_latex_table(cli, workdir):
    study()
    result = cli("report", "base", "variant", "--format", "latex", "-o", "table.tex", "-m", "iou50", "--title", "Results")
    assert result.code == 0, result.err
    tex = (workdir / "table.tex").read_text()
    assert tex.index(r"\caption{Results}") < tex.index(r"\begin{tabular}")
    assert r"\toprule" in tex and r"\textbf{0.5}" in tex


def test_bad_report_input_is_one_line_and_writes_nothing(cli, workdir):
    study()
    files = sorted(path.name for path in workdir.iterdir())
    for args, message in [
        (["--tag", "study", "-o", "missing/r.md"], "does not exist"),
        (["--tag", "study", "--format", "pdf"], "unknown report format 'pdf'"),
        (["--tag", "study", "--format", "latex", "-o", "r.md"], "--format latex writes a .tex file, not 'r.md'"),
        (["--tag", "nobody"], "matches --tag nobody"),
        (["base", "-m", "iou5"], "did you mean 'iou50'?"),
        (["--tag", "study", "-o", "r.docx"], "cannot write r.docx: unknown format '.docx'; end the file name in .md, .html"),
    ]:
        result = cli("report", *args)
        assert result.code == 2, (args, result.err)
        assert result.err.count("\n") == 1 and message in result.err, result.err
    assert sorted(path.name for path in workdir.iterdir()) == files


def test_report_selects_cards_as_every_command_does(cli, workdir, three_cards):
    def reported(*args):
        result = cli("report", *args, "-m", "iou50", "-o", "r.md")
        assert result.code == 0, result.err
        text = (workdir / "r.md").read_text()
        return [name for name in ("a_1", "a_2", "b_1") if f"| {name} |" in text]

    assert reported("a_*", "--tag", "x") == ["a_2"]
    assert reported() == ["a_1", "a_2", "b_1"]
    assert reported("--where", "N>=1", "--status", "finished") == ["a_2", "b_1"]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs a TeX installation (pdflatex)")
def test_the_latex_table_compiles_with_pdflatex(cli, workdir):
    study()
    assert cli("report", "--tag", "study", "--format", "latex", "-o", "table.tex").code == 0
    (workdir / "paper.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{table.tex}\n\\end{document}\n"
    )
    compiled = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=workdir, capture_output=True, text=True, timeout=120, check=False,
    )
    assert compiled.returncode == 0, compiled.stdout[-2000:]
    assert (workdir / "paper.pdf").stat().st_size > 0


def test_the_format_follows_the_suffix(cli, workdir):
    study()
    assert cli("report", "--tag", "study", "-o", "t.tex", "-m", "iou50").code == 0
    assert (workdir / "t.tex").read_text().startswith("% requires \\usepackage{booktabs}")


@pytest.mark.parametrize("command", [["report", "--tag", "study", "-o"], ["plot", "--tag", "study", "-o"]])
def test_a_device_or_a_pipe_is_never_replaced_by_a_report_or_a_plot(cli, workdir, command):
    import os
    import stat

    study()
    pipe = workdir / ("out.md" if command[0] == "report" else "out.png")
    os.mkfifo(pipe)
    result = cli(*command, str(pipe.name))
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert "it is not a regular file" in result.err
    assert stat.S_ISFIFO(pipe.stat().st_mode)
