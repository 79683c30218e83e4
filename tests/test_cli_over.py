"""`--over seed` in table, plot and report, on a study with a known mean and spread at every step."""

import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import refused
from scipy import stats

from expdb.cards import Selection, create_card, select_cards
from expdb.db import Database
from expdb.plot import plot_curves
from expdb.runs import begin_run

OFFSETS = (-0.1, 0.0, 0.1)  # per seed: loss = 1 / (1 + step) + offset, so the mean is 1 / (1 + step) and the std 0.1
IOU = {"v_N5": (0.50, 0.52, 0.55), "v_N10": (0.60, 0.63, 0.61)}


@pytest.fixture
def seeds(workdir):
    with Database(create=True) as db:  # iou50 is defined by default: IOU@0.50, higher is better
        for variant, values in IOU.items():
            for seed, (offset, iou) in enumerate(zip(OFFSETS, values, strict=True)):
                name = f"{variant}_seed{seed}"
                create_card(db, name, {"N": int(variant[3:]), "seed": seed}, tags=["v"])
                run = begin_run(db, name, device="cpu")
                for step in range(0, 50, 5):
                    run.log(step, loss=1 / (1 + step) + offset)
                run.summary(iou50=iou)
                run.end("finished")
        create_card(db, "v_N10_seed3", {"N": 10, "seed": 3}, tags=["v"])  # diverged: shown apart, not averaged
        run = begin_run(db, "v_N10_seed3", device="cpu")
        for step in range(0, 50, 5):
            run.log(step, loss=math.nan if step > 20 else 5.0)
        run.end("diverged")
    return workdir


def test_table_over_seed_against_a_variant(cli, seeds):
    result = cli("table", "--tag", "v", "-m", "iou50", "--over", "seed", "--baseline", "v_N10", "--format", "md")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "| variant | N | n | IOU@0.50 | vs v_N10 |"
    assert lines[2].startswith("| v_N10 (baseline) | 10 | 3 | **0.613 ± 0.015** |")
    # paired on seeds 0-2: differences -0.10, -0.11, -0.06
    expected = stats.ttest_rel(IOU["v_N5"], IOU["v_N10"])
    half = stats.t.ppf(0.975, 2) * stats.sem(np.subtract(IOU["v_N5"], IOU["v_N10"]))
    assert half == pytest.approx(0.066, abs=0.001) and expected.pvalue < 0.05
    assert lines[3] == "| v_N5 | 5 | 3 | 0.523 ± 0.025 | -0.09 [-0.16, -0.02] † |"


def test_table_refuses_a_mixed_group(cli, seeds):
    refused(cli, ["table", "--tag", "v", "-m", "iou50", "--group-by", "seed"], "the group seed=0 mixes cards that differ in N")


def test_plot_over_seed_draws_the_mean_in_its_band_and_counts_the_diverged_seed(seeds):
    with Database() as db:
        cards = select_cards(db, Selection(tag="v"))
        result = plot_curves(db, cards, ["loss"], seeds / "v.png", over="seed")
        std_band = plot_curves(db, cards, ["loss"], seeds / "std.png", over="seed", band="std")
    assert (seeds / "v.png").stat().st_size > 0
    n10 = next(band for band in result.bands if band.variant == "v_N10")
    assert n10.cards == ["v_N10_seed0", "v_N10_seed1", "v_N10_seed2"] and n10.diverged == ["v_N10_seed3"]
    steps = np.arange(0, 50, 5)
    assert np.array_equal(n10.xs, steps)
    assert n10.mean == pytest.approx(1 / (1 + steps))
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert n10.high - n10.mean == pytest.approx(np.full(10, half))
    assert n10.mean - n10.low == pytest.approx(np.full(10, half))
    n10_std = next(band for band in std_band.bands if band.variant == "v_N10")
    assert n10_std.high - n10_std.mean == pytest.approx(np.full(10, 0.1))


def test_plot_over_seed_from_the_command_line(cli, seeds):
    result = cli("plot", "--tag", "v", "-m", "loss", "--over", "seed", "--band", "std", "-o", "v.png")
    assert result.code == 0, result.err
    refused(cli, ["plot", "--tag", "v", "--over", "seed", "--band", "sem", "-o", "v.png"], "unknown --band 'sem'")


def test_report_over_seed_says_each_comparison_in_a_sentence(cli, seeds):
    result = cli("report", "--tag", "v", "-m", "iou50", "--over", "seed", "--baseline", "v_N10", "-o", "v.md")
    assert result.code == 0, result.err
    text = (seeds / "v.md").read_text()
    assert "- v_N5 vs v_N10: -0.09 IOU@0.50, 95% CI [-0.16, -0.02], distinguishable with 3 seeds each" in text
    assert "![loss](v_loss.png)" in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs a TeX installation (pdflatex)")
def test_the_folded_latex_table_compiles_without_siunitx(cli, seeds):
    result = cli("report", "--tag", "v", "-m", "iou50", "--over", "seed", "--baseline", "v_N10", "-o", "table.tex")
    assert result.code == 0, result.err
    table = (seeds / "table.tex").read_text()
    assert r"{\boldmath $0.613 \pm 0.015$}" in table and r"^\dagger$" in table
    (seeds / "paper.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{table.tex}\n\\end{document}\n"
    )
    compiled = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=seeds, capture_output=True, text=True, timeout=120, check=False,
    )
    assert compiled.returncode == 0, compiled.stdout[-2000:]


# Runs `expdb table` in a fresh interpreter; prints its output, then whether it imported scipy.
PROBE = """
import sys
from expdb.cli import main
sys.argv = ["expdb", "table", "--tag", "v", "-m", "iou50", "--over", "seed"]
try:
    main()
except SystemExit:
    pass
print("SCIPY", "scipy" in sys.modules)
"""


def test_a_folded_table_imports_scipy_only_where_its_tests_show(seeds):
    """Piped, rich writes no bold: the rows not worse than the best are not tested. In a terminal they are bold."""
    runs = {}
    for name, extra in (("piped", {}), ("terminal", {"FORCE_COLOR": "1", "COLUMNS": "120"})):
        env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "NO_COLOR", "COLUMNS")}
        result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**env, **extra}, check=True)
        runs[name] = result.stdout
    assert runs["piped"].rstrip().endswith("SCIPY False") and "\x1b" not in runs["piped"]
    assert runs["terminal"].rstrip().endswith("SCIPY True")
    assert "\x1b[1;32m0.613 ± 0.015\x1b[0m" in runs["terminal"]  # v_N10, the best, in bold green
    # The same text either way, and the footnote on bold is there without the tests.
    assert re.sub("\x1b\\[[0-9;]*m", "", runs["terminal"]).replace("True", "False") == runs["piped"]
    assert "Bold: the best mean" in runs["piped"]


def test_a_cost_and_its_test_are_left_out_for_width_before_the_parameters(seeds):
    """The test column against the baseline goes with its column: a cost's goes before the parameters, and
    the line saying what was left out names it with its column."""
    import io

    from rich.console import Console

    from expdb.render import render_rich
    from expdb.results import record_run
    from expdb.table import comparison

    with Database() as db:
        for card in select_cards(db, Selection(tag="v")):
            if card.status == "finished":  # a profile of each, its Params growing with N
                record_run(db, card.name, "finished", {"params": 1000.0 * card.params["N"] + card.params["seed"]})
        table = comparison(db, Selection(tag="v"), ["iou50"], over="seed", baseline="v_N10")

    def rendered(width: int) -> str:
        console = Console(width=width, file=io.StringIO(), color_system=None)
        render_rich(table, console)
        return console.file.getvalue()

    head = rendered(1000).splitlines()[0]
    assert [part.strip() for part in head.split("┃")] == ["variant", "N", "n", "IOU@0.50", "vs v_N10", "Params", "vs v_N10"]
    width = len(head[: head.index("Params")].rstrip(" ┃")) + 6  # the metric's test column, not the costs
    shown = rendered(width)
    assert [part.strip() for part in shown.splitlines()[0].split("┃")] == ["variant", "N", "n", "IOU@0.50", "vs v_N10"]
    assert "left out for width: Params, Params vs v_N10 (--wide or a pipe shows them)" in shown, shown
