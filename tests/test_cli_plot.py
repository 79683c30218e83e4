"""`expdb plot` from the command line: which cards, which file, what is said."""

import matplotlib.image

from expdb.cards import create_card
from expdb.db import Database
from expdb.runs import begin_run


def logged(name: str, tags=(), samples=True) -> None:
    with Database(create=True) as db:
        create_card(db, name, {"batch": 8}, tags=list(tags))
        run = begin_run(db, name, device="cpu")
        for step in range(50):
            run.log(step, samples=step * 8 if samples else None, loss=2.0 / (step + 1))
        run.end("finished")


def test_plot_names_and_globs_to_png(cli, workdir):
    logged("cvt_a")
    logged("cvt_b")
    logged("other")
    result = cli("plot", "cvt_*", "other", "-m", "loss", "--x", "samples", "--smooth", "0.6", "-o", "loss.png")
    assert result.code == 0, result.err
    assert "wrote loss.png" in result.out
    image = matplotlib.image.imread(workdir / "loss.png")
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_plot_by_tag_to_svg_names_every_card(cli, workdir):
    logged("bs8", tags=["bs"])
    logged("bs20", tags=["bs"])
    logged("untagged")
    result = cli("plot", "--tag", "bs", "--log-y", "-o", "bs.svg")
    assert result.code == 0, result.err
    svg = (workdir / "bs.svg").read_text()
    assert "bs8" in svg and "bs20" in svg and "untagged" not in svg


def test_plot_warns_when_a_run_lacks_the_axis(cli, workdir):
    logged("with_samples")
    with Database() as db:
        create_card(db, "no_batch", {})
        run = begin_run(db, "no_batch", device="cpu")
        for step in range(10):
            run.log(step, loss=1.0)
        run.end("finished")
    result = cli("plot", "with_samples", "no_batch", "--x", "samples", "-o", "p.png")
    assert result.code == 0, result.err
    assert "warning: no_batch has no samples axis; drawn against step" in result.err


def test_bad_plot_input_is_one_line_and_writes_nothing(cli, workdir):
    logged("a")
    files = sorted(path.name for path in workdir.iterdir())
    for args, message in [
        (["--where", "batch>100"], "matches --where 'batch>100'"),
        (["zz_*"], "no card name matches 'zz_*'"),
        (["a", "-m", "nosuch"], "no run has a 'nosuch' curve"),
        (["a", "-o", "p.gif"], ".gif"),
        (["a", "-o", "missing/p.png"], "does not exist"),
        (["a", "--x", "wall"], "wall"),
        (["--tag", "nobody"], "matches --tag nobody"),
    ]:
        result = cli("plot", *args)
        assert result.code == 2, (args, result.err)
        assert result.err.count("\n") == 1 and result.err.startswith("error: ") and message in result.err, result.err
    assert sorted(path.name for path in workdir.iterdir()) == files


def test_plot_selects_cards_as_every_command_does(cli, workdir, three_cards):
    def drawn(*args):
        result = cli("plot", *args, "-o", "s.svg")
        assert result.code == 0, result.err
        svg = (workdir / "s.svg").read_text()
        return [name for name in ("a_1", "a_2", "b_1") if name in svg]

    assert drawn("a_*", "--tag", "x") == ["a_2"]
    assert drawn() == ["a_1", "a_2", "b_1"]
    assert drawn("--where", "N>=1", "--status", "finished") == ["a_2", "b_1"]


def test_plot_cards_selected_by_where(cli, workdir):
    logged("small")
    with Database() as db:
        create_card(db, "big", {"batch": 64})
        run = begin_run(db, "big", device="cpu")
        run.log(0, loss=1.0)
        run.end("finished")
    result = cli("plot", "--where", "batch>=64", "-o", "w.svg")
    assert result.code == 0, result.err
    svg = (workdir / "w.svg").read_text()
    assert "big" in svg and "small" not in svg


def test_nothing_drawable_on_a_log_scale_is_refused(cli, workdir):
    with Database(create=True) as db:
        create_card(db, "negative", {})
        run = begin_run(db, "negative", device="cpu")
        for step in range(5):
            run.log(step, reward=-1.0 - step)
        run.end("finished")
    result = cli("plot", "negative", "-m", "reward", "--log-y", "-o", "r.png")
    assert result.code == 2
    assert result.err == "error: nothing to draw of reward on a log scale (no value above 0); nothing written\n"
    assert not (workdir / "r.png").exists()
