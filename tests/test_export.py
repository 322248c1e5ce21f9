"""Export and serving: ONNX and TorchScript round trips, metadata, ONNX predict against the
PyTorch run, the five lines of own-code use, refusals, and the CLI's one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import headstart
from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.export import EXTRA_FILE, METADATA_KEY, OnnxRun, export, export_run
from headstart.run import RUN_FILE

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model, shapes_dir) -> Path:
    out = tmp_path_factory.mktemp("export-runs") / "tiny"
    headstart.fit(shapes_dir, out=out, strategy="linear-probe", **tiny_model)
    return out


@pytest.fixture(scope="module")
def onnx_file(run_dir, tmp_path_factory) -> Path:
    return export(run_dir, format="onnx", out=tmp_path_factory.mktemp("exports") / "tiny.onnx")


def _batch(n: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 160, 160, generator=torch.Generator().manual_seed(seed))


def _pytorch_logits(run_dir: Path, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return headstart.load(run_dir, device="cpu").model.eval()(x).numpy()


def test_onnx_round_trip_with_dynamic_batch(run_dir, onnx_file):
    proto = onnx.load(str(onnx_file))
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for n in (1, 3):
        x = _batch(n)
        got = session.run(["logits"], {"input": x.numpy()})[0]
        ref = _pytorch_logits(run_dir, x)
        assert got.shape == (n, 3)
        assert np.abs(got - ref).max() < 1e-4


def test_onnx_metadata_says_how_to_prepare_and_read(run_dir, onnx_file):
    proto = onnx.load(str(onnx_file))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    info = json.loads((run_dir / RUN_FILE).read_text())
    assert meta["classes"] == ["circle", "square", "triangle"]
    pre = meta["preprocessing"]
    assert {k: pre[k] for k in ("crop", "resize", "interpolation", "mean", "std")} == info["preprocessing"]
    assert pre["input_size"] == 160 and pre["crop"] == 160
    assert meta["card"]["name"] == info["card"]["name"]
    assert meta["headstart_version"] == headstart.__version__
    assert meta["input"] == meta["input"] | {"name": "input", "shape": ["batch", 3, 160, 160], "dtype": "float32"}
    assert meta["output"]["name"] == "logits" and meta["output"]["kind"] == "logits"
    assert meta["output"]["shape"] == ["batch", 3]


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript is deprecated in PyTorch >= 2.10
def test_torchscript_round_trip_same_logits_and_metadata(run_dir, tmp_path):
    r = export_run(run_dir, format="torchscript", out=tmp_path / "tiny.pt")
    assert r.path == tmp_path / "tiny.pt" and r.max_abs_diff < 1e-4
    extra = {EXTRA_FILE: ""}
    module = torch.jit.load(str(r.path), map_location="cpu", _extra_files=extra)
    meta = json.loads(extra[EXTRA_FILE])
    assert meta["classes"] == ["circle", "square", "triangle"] and meta["output"]["kind"] == "logits"
    assert meta["preprocessing"]["crop"] == 160
    for n in (1, 3):
        x = _batch(n, seed=n)
        with torch.inference_mode():
            got = module(x).numpy()
        assert got.shape == (n, 3)
        assert np.abs(got - _pytorch_logits(run_dir, x)).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"]  # no temporary left beside it


def test_default_out_is_inside_the_run_and_loads_still(run_dir, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(run_dir, d)
    path = export(d)
    assert path == d / "model.onnx" and path.is_file()
    assert headstart.load(d).classes == ("circle", "square", "triangle")


def test_onnx_predict_matches_pytorch_predict(run_dir, onnx_file, shapes_test_dir):
    ref = headstart.load(run_dir, device="cpu").predict([shapes_test_dir], top_k=3)
    got = headstart.predict(onnx_file, [shapes_test_dir], top_k=3)
    assert len(got) == len(ref) == 12
    assert [g["file"] for g in got] == [r["file"] for r in ref]
    assert [g["label"] for g in got] == [r["label"] for r in ref]
    diffs = [abs(g["score"] - r["score"]) for g, r in zip(got, ref)]
    for g, r in zip(got, ref):
        assert set(g) == set(r) == {"file", "label", "score", "top_k"}
        scores_g = {t["label"]: t["score"] for t in g["top_k"]}
        diffs += [abs(scores_g[t["label"]] - t["score"]) for t in r["top_k"]]
    assert max(diffs) < 1e-4


def test_five_lines_of_own_code_give_predict_probabilities(run_dir, shapes_test_dir):
    files = sorted((shapes_test_dir / "square").iterdir())[:2]
    ref = headstart.load(run_dir, device="cpu").predict(files, top_k=3)
    for f, r in zip(files, ref):
        # the five lines of headstart.load's docstring and the README
        run = headstart.load(run_dir, device="cpu")
        transform = run.transform()
        model = run.model.eval()
        probs = model(transform(Image.open(f)).unsqueeze(0)).softmax(dim=1)
        label = run.classes[int(probs.argmax())]
        assert label == r["label"]
        assert abs(float(probs.detach().max()) - r["score"]) < 1e-4
        assert torch.equal(transform(f), transform(Image.open(f)))  # a path and a PIL image agree (small PNG/JPEG)


def test_onnx_run_refuses_what_it_cannot_use(tmp_path, onnx_file, shapes_test_dir):
    with pytest.raises(HeadstartError, match="does not exist"):
        OnnxRun(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(HeadstartError, match="not a readable ONNX model"):
        OnnxRun(junk)
    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(HeadstartError, match="no headstart metadata"):
        OnnxRun(bare)
    with pytest.raises(HeadstartError, match="top-k"):
        OnnxRun(onnx_file).predict([shapes_test_dir], top_k=0)


def test_refusals_name_the_input(run_dir, tmp_path):
    with pytest.raises(HeadstartError, match="is not one of onnx, torchscript"):
        export(run_dir, format="tflite", out=tmp_path / "m.tflite")
    with pytest.raises(HeadstartError, match="does not exist"):
        export(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(HeadstartError, match="is not a headstart run"):
        export(tmp_path / "plain")
    with pytest.raises(HeadstartError, match=r"must end in \.onnx"):
        export(run_dir, format="onnx", out=tmp_path / "m.pt")
    with pytest.raises(HeadstartError, match="replace a file of the run"):
        export(run_dir, format="torchscript", out=run_dir / "model.safetensors")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    info = json.loads((unfinished / RUN_FILE).read_text())
    (unfinished / RUN_FILE).write_text(json.dumps(info | {"status": "training"}))
    with pytest.raises(HeadstartError, match=r"has not finished.*--resume"):
        export(unfinished)
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("*.pt"))


def test_text_runs_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    words = ["good", "great", "fine", "bad", "awful", "poor", "film", "plot"]
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{w} " + " ".join(f"{v:.3f}" for v in rng.normal(size=8)) + "\n" for w in words))
    rows = [f"{a} film,pos" for a in ("good", "great", "fine")] * 4 + [f"{a} plot,neg" for a in ("bad", "awful", "poor")] * 4
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "text-run"
    headstart.fit(data, model=f"file:{vectors}", out=out, epochs=2)
    with pytest.raises(HeadstartError, match="text run.*image runs only"):
        export(out)


def test_cli_export_and_predict_onnx(capsys, run_dir, tmp_path, shapes_test_dir):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith(f"wrote {out} (onnx") and "matches PyTorch within" in stdout
    assert main(["predict", str(out), str(shapes_test_dir / "circle"), "--top-k", "2", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert len(preds) == 4 and all(len(p["top_k"]) == 2 for p in preds)


@pytest.mark.parametrize("args, says", [
    (["export", "{run}", "--format", "tflite"], "'tflite' is not one of 'onnx', 'torchscript'"),
    (["export", "{run}", "--out", "{tmp}/model.pt"], "must end in .onnx for --format onnx"),
    (["predict", "{run}/model.safetensors", "{tmp}"], "is a file, not a run folder"),
    (["export", "{tmp}/nowhere"], "does not exist"),
    (["predict", "{tmp}/nowhere.onnx", "{tmp}"], "does not exist; write one with `headstart export"),
])
def test_cli_mistakes_are_one_line_exit_2(capsys, run_dir, tmp_path, args, says):
    code = main([a.format(run=run_dir, tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err


def test_an_export_that_disagrees_with_pytorch_is_not_written(run_dir, tmp_path, monkeypatch):
    import sys

    module = sys.modules["headstart.export"]  # the attribute headstart.export is the function
    monkeypatch.setattr(module, "TOLERANCE", 0.0)  # no export can match within 0
    with pytest.raises(HeadstartError, match="disagrees with PyTorch.*nothing was written"):
        export(run_dir, format="onnx", out=tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
