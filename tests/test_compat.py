"""Runs written by headstart 0.2 (before the one training engine) still load, evaluate, predict,
export and resume with today's code, to the same figures and weights (tests/fixtures/runs-0.2,
made by tests/fixtures/make_runs_0_2.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

import headstart
from headstart.data.images import files_fingerprint, read_image_data

FIXTURE = Path(__file__).parent / "fixtures" / "runs-0.2"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture()
def moved(tmp_path, tiny_weights) -> Path:
    """The fixture copied elsewhere, as a user who moved the folder would have it: the data's and the
    pretrained weights' paths in the stopped run's record point to the copies."""
    root = tmp_path / "runs-0.2"
    shutil.copytree(FIXTURE, root)
    data = root / "data"
    record = root / "stopped" / "headstart.json"
    info = json.loads(record.read_text())
    info["data"]["source"] = str(data)
    info["data"]["fingerprint"] = files_fingerprint(read_image_data(data).paths)
    info["card"]["name"] = f"file:{tiny_weights}"
    info["card"]["weights"]["location"] = str(tiny_weights)
    record.write_text(json.dumps(info))
    return root


def test_a_finished_run_of_0_2_loads_evaluates_predicts_and_exports_as_it_did(moved, tmp_path):
    run = headstart.load(moved / "finished")
    assert headstart.evaluate(run, moved / "data")["accuracy"] == pytest.approx(EXPECTED["finished_evaluate"])
    rows = headstart.predict(run, sorted((moved / "data" / "circle").iterdir()))
    assert [r["label"] for r in rows] == [label for label, _ in EXPECTED["finished_predict"]]
    assert [r["score"] for r in rows] == pytest.approx([s for _, s in EXPECTED["finished_predict"]], abs=2e-6)
    onnx = headstart.export(run, "onnx", tmp_path / "model.onnx")
    exported = headstart.predict(onnx, sorted((moved / "data" / "circle").iterdir()))
    assert [r["score"] for r in exported] == pytest.approx([s for _, s in EXPECTED["finished_predict"]], abs=1e-4)


def test_a_run_of_0_2_stopped_between_phases_resumes_to_the_same_weights(moved):
    resumed = headstart.resume(moved / "stopped")
    # The same figures to float rounding, not to the last bit: CPUs with and without AVX-512 run different float
    # kernels (an AVX2 machine ends 1.4e-7 away from the 0.2 machine's loss, and its weights hash differently).
    losses, expected = [h["train_loss"] for h in resumed.metrics["history"]], EXPECTED["resumed_train_losses"]
    assert [v is None for v in losses] == [v is None for v in expected]  # the first phase's, before the stop
    assert [v for v in losses if v is not None] == pytest.approx([v for v in expected if v is not None], rel=1e-5)
    tensors = load_file(str(moved / "stopped" / "model.safetensors"))
    stats = {k: [float(t.double().norm()), float(t.double().sum())] for k, t in sorted(tensors.items())}
    want = EXPECTED["resumed_weights_stats"]
    assert stats.keys() == want.keys()
    assert [v for k in want for v in stats[k]] == pytest.approx([v for k in want for v in want[k]], rel=1e-5, abs=1e-6)
