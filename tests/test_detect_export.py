"""Detection export: Faster / Mask R-CNN runs to ONNX (onnxruntime) and TorchScript, the check before
writing, predicting with an ONNX export against the run folder, refusals, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.cli import main
from headstart.detection import export as dexport
from headstart.detection.synthetic import write_candy
from headstart.detection.inputs import load_image
from headstart.detection.train import fit_detector
from headstart.errors import HeadstartError
from headstart.export import EXTRA_FILE, METADATA_KEY, OnnxRun, export_run
from headstart.run import RUN_FILE

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CANDY = ["chocolate_bar", "lollipop", "gummy_bear", "mint"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The candy scenes, a one-epoch Faster R-CNN run and a one-epoch Mask R-CNN run (seconds each),
    and the Faster run's ONNX export, built with one thread (the thread count is restored after: the
    tests after this module would otherwise run on one thread, with other float rounding)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def _build(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detect-export")
    with pytest.MonkeyPatch.context() as mp:  # the autouse cache isolation is per test; this fixture is per module
        mp.setenv("HEADSTART_CACHE", str(root / "cache"))
        mp.setenv("HEADSTART_ZOO", str(root / "zoo"))
        write_candy(root / "candy", n_images=6, seed=0)
        out = {"images": root / "candy" / "images"}
        for kind in ("faster", "mask"):
            fit_detector(root / "candy", "mobilenet_v2", root / kind, strategy="finetune", epochs=1, input_size=128,
                         val_split=0.0, detector=kind)
            out[kind] = root / kind
    out["faster_onnx"] = export_run(out["faster"], "onnx", root / "faster.onnx").path
    return out


def test_onnx_export_is_checked_and_says_how_to_use_it(built):
    path = built["faster_onnx"]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    info = json.loads((built["faster"] / RUN_FILE).read_text())
    assert meta["task"] == "detect" and meta["classes"] == CANDY
    assert "1-based" in meta["labels"]
    assert meta["detector"] | {"kind": "faster", "min_score": 0.05} == meta["detector"]
    pre = meta["preprocessing"]
    assert {k: pre[k] for k in ("min_size", "max_size", "mean", "std")} == {
        k: info["spec"][k] for k in ("min_size", "max_size", "mean", "std")} and pre["min_size"] == 128
    assert [i["name"] for i in meta["inputs"]] == ["image", "score_threshold"]
    assert [o["name"] for o in meta["outputs"]] == ["boxes", "labels", "scores"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [i.name for i in session.get_overridable_initializers()] == ["score_threshold"]  # optional, 0.05
    assert [o.name for o in session.get_outputs()] == ["boxes", "labels", "scores"]


def test_onnx_matches_pytorch_at_sizes_other_than_traced(built):
    """Every candy image (sizes 238 to 276 px high, none the traced 320x256; 346x242 resizes to 128 rows
    in PyTorch and to 127 with torchvision's own float32 resize), and a threshold fed to the graph."""
    run = headstart.load(built["faster"], device="cpu")
    session = ort.InferenceSession(str(built["faster_onnx"]), providers=["CPUExecutionProvider"])
    worst = 0.0
    for f in sorted(built["images"].iterdir()):
        x = load_image(f)
        for threshold in (0.05, 0.08):
            run.model.roi_heads.score_thresh = threshold
            with torch.inference_mode():
                ref = {k: v.numpy() for k, v in run.model([x])[0].items()}
            got = dict(zip(("boxes", "labels", "scores"), session.run(None, {
                "image": x.numpy(), "score_threshold": np.array(threshold, np.float32)})))
            d = dexport.compare(got, ref)  # raises unless as many detections, each with a same-label twin
            assert d["box"] < 1e-2 and d["score"] < 1e-4
            worst = max(worst, d["box"])
    assert len(ref["scores"]) > 0 and worst < 1e-2


def test_onnx_predict_gives_the_run_folders_rows_and_draws(built, tmp_path):
    run = headstart.load(built["faster"], device="cpu")
    ref = run.predict([built["images"]], score_threshold=0.08, batch_size=1)  # one at a time, as the export
    got = headstart.predict(built["faster_onnx"], [built["images"]], score_threshold=0.08, out_dir=tmp_path / "drawn")
    assert [g["file"] for g in got] == [r["file"] for r in ref] and len(got) == 6
    assert sum(len(g["detections"]) for g in got) > 0
    for g, r in zip(got, ref):
        assert (g["width"], g["height"]) == (r["width"], r["height"])
        assert len(g["detections"]) == len(r["detections"])
        for a, b in zip(g["detections"], r["detections"]):
            assert a["label"] == b["label"] and abs(a["score"] - b["score"]) <= 2e-4
            assert max(abs(u - v) for u, v in zip(a["box"], b["box"])) <= 0.11  # rows round boxes to 0.1 px
            assert a["score"] >= 0.08
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == sorted(
        [f"{Path(g['file']).stem}.png" for g in got] + ["detections.json"])
    o = OnnxRun(built["faster_onnx"])
    assert o.modality == "detection" and o.classes == tuple(CANDY)
    with pytest.raises(HeadstartError, match="detection export.*predict"):
        o.logits(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(HeadstartError, match="--score-threshold must be in"):
        o.predict([built["images"]], score_threshold=1.5)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
@pytest.mark.filterwarnings("ignore:RCNN always returns")  # torchvision's scripted forward says it on every call
def test_torchscript_export_scripts_the_detector(built, tmp_path):
    r = export_run(built["faster"], "torchscript", tmp_path / "faster.pt")
    assert r.check["max_box_diff_px"] == 0.0 and len(r.check["images"]) == 3
    extra = {EXTRA_FILE: ""}
    module = torch.jit.load(str(r.path), map_location="cpu", _extra_files=extra)
    assert json.loads(extra[EXTRA_FILE])["task"] == "detect"
    run = headstart.load(built["faster"], device="cpu")
    x = load_image(sorted(built["images"].iterdir())[2])
    with torch.inference_mode():
        _, got = module([x])
        ref = run.model([x])[0]
    assert torch.equal(got[0]["labels"], ref["labels"]) and torch.allclose(got[0]["boxes"], ref["boxes"])


def test_mask_runs_export_with_masks(capsys, built, tmp_path):
    out = tmp_path / "mask.onnx"
    assert main(["export", str(built["mask"]), "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["metadata"]["detector"]["kind"] == "mask" and r["check"]["mask_pixels_differing"] < 1e-3
    assert [o["name"] for o in r["metadata"]["outputs"]] == ["boxes", "labels", "scores", "masks"]
    image = sorted(built["images"].iterdir())[:1]
    ref = headstart.load(built["mask"], device="cpu").predict(image, score_threshold=0.1, batch_size=1)
    assert main(["predict", str(out), str(image[0]), "--score-threshold", "0.1", "--out", str(tmp_path / "d"),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got[0]["detections"]) == len(ref[0]["detections"]) > 0
    assert [d["label"] for d in got[0]["detections"]] == [d["label"] for d in ref[0]["detections"]]
    assert (tmp_path / "d" / f"{image[0].stem}.png").is_file()


def test_cli_export_prints_what_goes_in_and_out(capsys, built, tmp_path):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(built["faster"]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"wrote {out} (onnx") and "Faster R-CNN from mobilenet_v2, 4 classes" in text
    assert "input   'image' float32 [3, height, width]" in text and "shorter side to 128" in text
    assert "'score_threshold'" in text and "'boxes' [n, 4]" in text and "1-based" in text
    assert "checked matches PyTorch on 3 synthetic scenes" in text and "crop" not in text


def test_refusals_are_one_line_and_write_nothing(capsys, built, tmp_path, monkeypatch):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(built["faster"], unfinished)
    info = json.loads((unfinished / RUN_FILE).read_text())
    (unfinished / RUN_FILE).write_text(json.dumps(info | {"status": "training"}))
    with pytest.raises(HeadstartError, match=r"has not finished.*--resume"):
        export_run(unfinished, "onnx", tmp_path / "u.onnx")
    assert main(["export", str(unfinished), "--out", str(tmp_path / "u.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run") and "has not finished" in err and err.count("\n") == 1
    monkeypatch.setattr(dexport, "BOX_TOLERANCE", -1.0)  # as if the export drifted from PyTorch
    assert main(["export", str(built["faster"]), "--out", str(tmp_path / "drift.onnx")]) == 2
    err = capsys.readouterr().err
    assert "disagrees with PyTorch" in err and "nothing was written" in err and err.count("\n") == 1
    assert not list(tmp_path.rglob("*.onnx"))
    assert main(["predict", str(built["faster_onnx"]), str(built["images"]), "--device", "cuda"]) == 2
    assert "run on the CPU" in capsys.readouterr().err
