"""Start-up and re-fits stay light: no torch for --help, models, argument errors, or a linear probe
re-fitted on cached features (its run written from the cache's copy of the body)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from headstart.cli import main


def run_python(code: str) -> dict:
    """Run `code` in a fresh interpreter (the tests' environment, so the same cache and zoo); it
    prints one JSON line last."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_help_answer_without_torch(tmp_path):
    r = run_python(f"""
import contextlib, io, json, sys
import headstart
from headstart.cli import main
light = 'torch' not in sys.modules
codes = []
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    codes.append(main(["--help"]))
    codes.append(main(["models"]))
    codes.append(main(["fit", "--help"]))
    codes.append(main(["fit", "x", "--head", "tree", "--out", {str(tmp_path / 'o')!r}]))
    codes.append(main(["fit", {str(tmp_path)!r}, "--strategy", "bogus", "--out", {str(tmp_path / 'o')!r}]))
    codes.append(main(["fit", {str(tmp_path / 'missing')!r}, "--out", {str(tmp_path / 'o')!r}]))
print(json.dumps({{"light": light, "codes": codes, "torch": "torch" in sys.modules, "fit": callable(headstart.fit)}}))
""")
    assert r == {"light": True, "codes": [0, 0, 0, 2, 2, 2], "torch": False, "fit": True}
    assert not (tmp_path / "o").exists()


def test_a_cached_refit_imports_no_torch_and_writes_the_same_run(tmp_path, tiny_weights, shapes_dir, capsys):
    assert main(["models", "add", "tiny", "--from", str(tiny_weights), "--arch", "timm:test_efficientnet"]) == 0
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["fit", str(shapes_dir), "--model", "tiny", "--strategy", "linear-probe", "--out", str(first),
                 "--quiet"]) == 0
    r = run_python(f"""
import contextlib, io, json, sys
from headstart.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["fit", {str(shapes_dir)!r}, "--model", "tiny", "--strategy", "linear-probe", "--out",
                 {str(again)!r}, "--json"])
print(json.dumps({{"code": code, "torch": "torch" in sys.modules}}))
""")
    assert r == {"code": 0, "torch": False}
    a, b = load_file(str(first / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    metrics = json.loads((again / "metrics.json").read_text())
    assert metrics["cache_hit"] is True and metrics["validation"].endswith("cross-validation")
    # the run written without torch loads and predicts like any other
    capsys.readouterr()
    assert main(["predict", str(again), str(next(Path(shapes_dir).glob("circle/*")))]) == 0
    assert "circle" in capsys.readouterr().out
