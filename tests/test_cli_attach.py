"""`expdb attach CARD FILE`, and `new --config`: files kept with a card, shown, reported and copied."""

from pathlib import Path

import pytest
from conftest import query, refused

from expdb.configs import read_config

CONFIGS = Path(__file__).resolve().parent / "data" / "configs"


@pytest.fixture
def figure(workdir) -> Path:
    path = workdir / "loss_explosion.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return path


def test_attach_stores_the_file_by_its_hash_and_show_lists_it(cli, figure):
    assert cli("new", "cvt_io_v2_3").code == 0
    result = cli("attach", "cvt_io_v2_3", str(figure), "--note", "the curve before it exploded")
    assert result.code == 0, result.err
    (name, size, sha256, note) = query("SELECT name, size, sha256, note FROM attachment")[0]
    import hashlib

    assert (name, size, note) == ("loss_explosion.png", figure.stat().st_size, "the curve before it exploded")
    assert sha256 == hashlib.sha256(figure.read_bytes()).hexdigest()
    stored = next(Path(".").glob(f"expdb_files/*/{sha256[:2]}/{sha256}"), None) or next(
        Path("expdb_files").glob(f"*/{sha256[:2]}/{sha256}")
    )
    assert stored.read_bytes() == figure.read_bytes()
    shown = cli("show", "cvt_io_v2_3").out
    assert "attachments" in shown and "loss_explosion.png" in shown and sha256[:12] in shown
    again = cli("attach", "cvt_io_v2_3", str(figure))
    assert "already attached, nothing added" in again.out
    assert query("SELECT count(*) FROM attachment")[0][0] == 1


def test_report_embeds_images_and_links_other_files(cli, figure, workdir):
    assert cli("record", "a", "--iou50", "0.3", "--source", "paper").code == 0
    config = workdir / "detr3d_r50.py"
    config.write_text("model = dict(type='DETR3D')\n")
    assert cli("attach", "a", str(figure)).code == 0
    assert cli("attach", "a", str(config)).code == 0
    result = cli("report", "a", "--metric", "iou50", "-o", "report.md")
    assert result.code == 0, result.err
    text = (workdir / "report.md").read_text()
    assert "![loss_explosion.png](report_files/a/loss_explosion.png)" in text
    assert "- [detr3d_r50.py](report_files/a/detr3d_r50.py)" in text
    assert (workdir / "report_files" / "a" / "loss_explosion.png").read_bytes() == figure.read_bytes()


@pytest.mark.sqlite_only
def test_copy_carries_attachments_and_their_content(cli, figure, workdir):
    assert cli("new", "a").code == 0
    assert cli("attach", "a", str(figure)).code == 0
    result = cli("copy", "--to", "other.db")
    assert result.code == 0, result.err
    assert "1 attachment" in result.out
    sha256 = query("SELECT sha256 FROM attachment")[0][0]
    assert (workdir / "expdb_files" / "other.db" / sha256[:2] / sha256).read_bytes() == figure.read_bytes()
    assert "loss_explosion.png" in cli("show", "a", "--db", "other.db").out


def test_new_with_a_config_attaches_it_and_flattens_it_into_parameters(cli):
    result = cli("new", "detr_a", "--config", str(CONFIGS / "detr_r50_8xb2-150e_coco.py"), "--flatten")
    assert result.code == 0, result.err
    assert "attached" in result.out
    assert (
        cli(
            "new",
            "detr_b",
            "--config",
            str(CONFIGS / "detr_r50_8xb2-150e_coco.py"),
            "--flatten",
            "--model.decoder.num_layers",
            "3",
        ).code
        == 0
    )
    diff = cli("diff", "detr_a", "detr_b").out
    assert "model.decoder.num_layers" in diff and "6" in diff and "3" in diff
    assert query("SELECT name FROM attachment ORDER BY id") == [("detr_r50_8xb2-150e_coco.py",), ("detr_r50_8xb2-150e_coco.py",)]


def test_python_configs_are_read_without_running_them(tmp_path):
    values = read_config(CONFIGS / "detr_r50_8xb2-150e_coco.py")
    assert values.params["model.decoder.num_layers"] == 6
    assert values.params["model.backbone.depth"] == 50
    assert values.params["_base_"] == ["../_base_/datasets/coco_detection.py", "../_base_/default_runtime.py"]
    assert values.params["optim_wrapper.optimizer.lr"] == 0.0001
    evil = tmp_path / "evil.py"
    marker = tmp_path / "ran"
    evil.write_text(
        f"import os\nos.system('touch {marker}')\nlr = 0.1\nsteps = [i for i in range(3)]\n"
        "root = 'data/'\nann = root + 'a.json'\n"
    )
    read = read_config(evil)
    assert (
        not marker.exists() and read.params == {"lr": 0.1, "root": "data/", "ann": "data/a.json"} and read.left_out == ["steps"]
    )
    yaml_config = tmp_path / "cfg.yaml"
    yaml_config.write_text("model:\n  decoder:\n    num_layers: 6\n  dropout: 0.1\nseed: null\n")
    assert read_config(yaml_config).params == {"model.decoder.num_layers": 6, "model.dropout": 0.1}


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["attach", "a", "missing.png"], "no such file to attach: missing.png", id="missing-file"),
        pytest.param(["attach", "a", "big.bin", "--max-size", "1K"], "over the limit of 1.0KB", id="over-the-limit"),
        pytest.param(["attach", "a", "."], "is not a file", id="folder"),
        pytest.param(["attach", "nosuch", "big.bin"], "no card named 'nosuch'", id="no-card"),
        pytest.param(["attach", "a", "big.bin", "--max-size", "lots"], "cannot read --max-size 'lots'", id="bad-max-size"),
        pytest.param(["attach", "a", "big.bin", "--run", "7"], "a has no run 7", id="no-such-run"),
        pytest.param(["new", "b", "--config", "missing.py"], "no such config file: missing.py", id="missing-config"),
        pytest.param(["new", "b", "--config", "broken.py", "--flatten"], "broken.py is not valid Python", id="broken-config"),
        pytest.param(["new", "b", "--flatten"], "--flatten reads the parameters of a config", id="flatten-alone"),
    ],
)
def test_bad_attachments_change_nothing(cli, workdir, args, message):
    (workdir / "big.bin").write_bytes(b"x" * 4096)
    (workdir / "broken.py").write_text("model = dict(\n")
    assert cli("new", "a").code == 0
    refused(cli, args, message)
    assert not list(workdir.glob("expdb_files/*/??/*"))
