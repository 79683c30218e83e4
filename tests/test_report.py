"""`write_report`: a study written up as markdown with plots, or as a LaTeX table."""

import re

import matplotlib.image
import pytest

from expdb.cards import Selection, add_note, create_card, select_cards
from expdb.errors import ExpdbError
from expdb.report import write_report
from expdb.runs import begin_run


def trained(db, name, iou50, *, lr=4e-3, parent=None, note=None, diverge_at=None, tags=("cvt_io",), curves=("loss",)):
    create_card(db, name, {"N": 5, "L": 6, "lr": lr} if parent is None else {"lr": lr}, parent=parent, note=note, tags=list(tags))
    run = begin_run(db, name, device="cpu")
    for step in range(60):
        if diverge_at is not None and step == diverge_at:
            run.log(step, loss=float("nan"))
            break
        run.log(step, **{curve: 2.0 / (step + 1) for curve in curves})
    if diverge_at is None:
        run.summary(iou50=iou50)
    run.end("finished")
    return run


@pytest.fixture
def study(db):
    trained(db, "cvt", 0.36, note="baseline CvT backbone")
    trained(db, "cvt_io_v2_8", 0.26, parent="cvt", note="latent arrays, N = 3")
    add_note(db, "cvt_io_v2_8", "same budget as cvt")
    trained(db, "cvt_io_v2_9", 0.34, parent="cvt", lr=2e-3, note="does a shallower latent stack hold IOU?", curves=("loss", "lr"))
    trained(db, "blowup", 0.0, parent="cvt", lr=10.0, note="how far can lr go?", diverge_at=30)
    trained(db, "unrelated", 0.5, tags=())
    return db


def report_files(directory):
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("cvt_io"))


def test_markdown_report_has_every_section_and_its_plots(study, workdir):
    (workdir / "reports").mkdir()
    cards = select_cards(study, Selection(tag="cvt_io"))
    output = workdir / "reports" / "cvt_io.md"
    written = write_report(study, cards, output, metrics=["iou50"], curves=["loss", "lr", "acc"], title="Latent arrays")
    assert written == [output, workdir / "reports" / "cvt_io_loss.png", workdir / "reports" / "cvt_io_lr.png"]
    assert report_files(workdir / "reports") == ["cvt_io.md", "cvt_io_loss.png", "cvt_io_lr.png"]
    text = output.read_text()

    assert text.startswith("# Latent arrays\n")
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings == ["What was compared", "Results", "Hyperparameters that differ", "Curves", "What went wrong", "Environment"]
    # the notes the user wrote, per card
    assert "**`cvt_io_v2_9`**" in text and "does a shallower latent stack hold IOU?" in text
    assert "latent arrays, N = 3. same budget as cvt." in text
    # the comparison table: these cards only, the best in bold
    results = text.split("## Results")[1].split("##")[0]
    assert results.count("| card |") == 1 and "IOU@0.50" in results
    assert "**0.36**" in results and "unrelated" not in results
    assert "cvt_io_v2_9" in results and "blowup" in results
    # the hyperparameters that differ, with each card's value; the shared ones in a sentence
    params = text.split("## Hyperparameters that differ")[1].split("##")[0]
    assert "| card | lr |" in params and "| blowup | 10.0 |" in params and "| cvt_io_v2_9 | 2e-3 |" in params
    assert "Shared by all: N=5, L=6." in params
    # plots linked relatively, and existing; a curve no card has is said so
    for curve in ("loss", "lr"):
        assert f"![{curve}](cvt_io_{curve}.png)" in text
        image = matplotlib.image.imread(workdir / "reports" / f"cvt_io_{curve}.png")
        assert image.shape[0] > 100
    assert "No card logged the curve `acc`, so there is no plot of it." in text
    assert "Not drawn, having no `lr` curve: `cvt`, `cvt_io_v2_8`, `blowup`." in text
    # the divergence note with its step
    problems = text.split("## What went wrong")[1].split("##")[0]
    assert re.search(r"\*\*`blowup`\*\* \(run \d+, step 30\): diverged: loss became NaN at step 30", problems), problems
    # the environment of the latest runs
    environment = text.split("## Environment")[1]
    assert "| card | run | status | started | ended | duration | host | device | torch | CUDA | git commit |" in environment
    assert re.search(
        r"\| blowup \| \d+ \| diverged \| \d{4}-\d\d-\d\d \d\d:\d\d \| \d{4}-\d\d-\d\d \d\d:\d\d \| 0m0\ds \|", environment
    )
    # reads as prose, not Python
    for raw in ("None", "True", "False", "{'", "[]", "nan |"):
        assert raw not in text, raw


def test_rerunning_updates_the_same_files(study, workdir):
    cards = select_cards(study, Selection(tag="cvt_io"))
    output = workdir / "cvt_io.md"
    write_report(study, cards, output, metrics=["iou50"])
    first = output.read_text()
    add_note(study, "cvt", "rerun with a warmup")
    write_report(study, cards, output, metrics=["iou50"])
    assert report_files(workdir) == ["cvt_io.md", "cvt_io_loss.png"]
    assert not [path for path in workdir.iterdir() if path.name.startswith(".")]  # no temporary left
    assert "rerun with a warmup" in output.read_text() and "rerun with a warmup" not in first


def test_baseline_outside_the_selection_is_added_and_marked(study, workdir):
    cards = select_cards(study, Selection(("cvt_io_*",)))
    output = workdir / "cvt_io.md"
    write_report(study, cards, output, metrics=["iou50"], baseline="cvt")
    text = output.read_text()
    assert "| cvt (baseline) |" in text and "against the baseline, `cvt`" in text
    assert "0.34 (-0.02)" in text


def test_latex_report_is_one_booktabs_table(study, workdir):
    cards = select_cards(study, Selection(tag="cvt_io"))
    output = workdir / "table.tex"
    written = write_report(study, cards, output, metrics=["iou50"], format="latex", title="IOU of latent arrays")
    assert written == [output]
    assert sorted(path.name for path in workdir.iterdir() if not path.name.startswith("experiments.db")) == [
        "expdb_runs",
        "table.tex",
    ]
    text = output.read_text()
    assert text.index(r"\caption{IOU of latent arrays}") < text.index(r"\begin{tabular}") < text.index(r"\toprule")
    assert r"\bottomrule" in text and "cvt\\_io\\_v2\\_9" in text and "unrelated" not in text
    assert r"\textbf{0.36}" in text


def test_bad_input_is_one_line_and_writes_nothing(study, workdir):
    cards = select_cards(study, Selection(tag="cvt_io"))
    before = sorted(workdir.iterdir())
    cases = [
        ({"output": workdir / "missing" / "r.md"}, "directory"),
        ({"output": workdir / "missing" / "r.tex", "format": "latex"}, "does not exist"),
        ({"cards": []}, "no cards to report on"),
        ({"format": "pdf"}, "use one of: md, latex, html"),
        ({"metrics": ["accuracy"]}, "no card of the report has a metric 'accuracy': cvt has iou50, loss, train_steps_per_s;"),
        ({"metrics": ["iou5"]}, "metric 'iou5' (did you mean 'iou50'?)"),
        ({"x": "wall"}, "unknown x axis"),
        ({"smooth": 1.5}, "--smooth"),
    ]
    for change, message in cases:
        arguments = {"cards": cards, "output": workdir / "r.md", "metrics": ["iou50"]} | change
        with pytest.raises(ExpdbError) as raised:
            write_report(study, arguments.pop("cards"), arguments.pop("output"), **arguments)
        assert message in str(raised.value) and "\n" not in str(raised.value), (change, str(raised.value))
    assert sorted(workdir.iterdir()) == before


def test_a_metric_only_other_cards_have_says_who_has_what(study, workdir):
    create_card(study, "planned_only", {"N": 1})
    with pytest.raises(ExpdbError, match="no card of the report has a metric 'iou50': planned_only has no metrics"):
        write_report(study, select_cards(study, Selection(("planned_only",))), workdir / "r.md", metrics=["iou50"])
    expected = r"metric 'lr': cvt has iou50, loss, train_steps_per_s; blowup has loss, train_steps_per_s"
    with pytest.raises(ExpdbError, match=expected):
        write_report(study, select_cards(study, Selection(("cvt", "blowup"))), workdir / "r.md", metrics=["lr"])
    assert not (workdir / "r.md").exists()


def test_a_failure_midway_leaves_the_previous_report_whole(study, workdir, monkeypatch):
    import expdb.plot

    cards = select_cards(study, Selection(tag="cvt_io"))
    output = workdir / "cvt_io.md"
    write_report(study, cards, output, metrics=["iou50"], curves=["loss", "lr"])
    before = {path.name: path.read_bytes() for path in workdir.iterdir() if path.name.startswith("cvt_io")}
    real = expdb.plot.plot_curves

    def failing(db, cards, metrics, output, **options):
        if metrics == ["lr"]:
            raise ExpdbError("disk full")
        return real(db, cards, metrics, output, **options)

    monkeypatch.setattr(expdb.plot, "plot_curves", failing)
    add_note(study, "cvt", "a note that must not appear")
    with pytest.raises(ExpdbError, match="disk full"):
        write_report(study, cards, output, metrics=["iou50"], curves=["loss", "lr"])
    after = {path.name: path.read_bytes() for path in workdir.iterdir() if path.name.startswith("cvt_io")}
    assert after == before
    assert not [path for path in workdir.iterdir() if path.name.startswith(".")]


def test_comparison_sentences_give_every_difference_its_unit(db, workdir):
    from expdb.cards import Selection as Picked
    from expdb.metrics import define_metric
    from expdb.report import comparison_sentences
    from expdb.table import comparison

    define_metric(db, "latency", unit="ms", direction="lower", digits=1)
    latencies = {"base": (10.0, 12.0, 11.0), "wide": (11.0, 10.5, 13.0), "same": (10.0, 12.0, 11.0)}
    for variant, values in latencies.items():
        for seed, value in enumerate(values):
            create_card(db, f"{variant}_seed{seed}", {"width": variant, "seed": seed}, tags=["s"])
            run = begin_run(db, f"{variant}_seed{seed}", device="cpu")
            run.summary(latency=value)
            run.end("finished")
    table = comparison(db, Picked(tag="s"), ["latency"], over="seed", baseline="base")
    sentences = "\n".join(comparison_sentences(table))
    number = r"[-+]?\d+(?:\.\d+)?ms"
    assert re.search(rf"wide vs base: {number} latency, 95% CI \[{number}, {number}\], not distinguishable", sentences)
    assert re.search(rf"a difference of {number} would need about \d+ seeds each", sentences), sentences
    assert "same vs base: 0ms latency, untested: the seeds gave identical differences." in sentences


def test_a_report_of_every_metric_names_them(study, workdir):
    cards = select_cards(study, Selection(tag="cvt_io"))
    write_report(study, cards, workdir / "all.md", metrics=[])
    text = (workdir / "all.md").read_text()
    assert f"{len(cards)} cards, compared on IOU@0.50." in text
