"""Everyday commands start fast: they never import torch, fvcore, matplotlib, pandas or scipy."""

import json
import subprocess
import sys

import pytest
from conftest import EXAMPLE_DB

HEAVY = {"torch", "fvcore", "matplotlib", "pandas", "scipy"}
# Runs the CLI in a fresh interpreter, then reports which top-level modules it imported.
PROBE = """
import json, sys
from expdb.cli import main
sys.argv = ["expdb", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["table", "--metric", "iou50"],
        ["table", "--format", "csv"],
        ["table", "--format", "latex"],
        ["list"],
        ["show", "cvt_io_v2_6"],
        ["diff", "cvt", "cvt_io_v2_5"],
        ["compare", "cvt", "cvt_io_v2_5"],
        ["new", "probe", "--from", "cvt_io_v2_9", "--N", "7"],
        ["sweep", "probe", "--from", "cvt_io_v2_9", "--N", "3,5,7"],
        ["note", "cvt", "a note"],
        ["queue"],
        ["copy", "--to", "copied.db", "cvt_io_v2_*"],
    ],
    ids=" ".join,
)
def test_everyday_commands_do_not_import_heavy_libraries(tmp_path, args):
    database = tmp_path / "study.db"
    database.write_bytes(EXAMPLE_DB.read_bytes())
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([*args, "--db", str(database)])],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "error" not in result.stderr.split("\nMODULES ")[0]
    modules = set(json.loads(result.stderr.rsplit("MODULES ", 1)[1]))
    assert "expdb" in modules
    assert not modules & HEAVY
