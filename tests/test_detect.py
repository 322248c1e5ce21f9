"""Detection: fit / evaluate / predict / resume on tiny synthetic candy, and torchvision checkpoints.

Tiny on purpose (6 scenes, 128 px, 1-2 epochs): these check the plumbing and the contracts;
benchmarks/bench_detect.py measures what the detector reaches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.cli import main
from headstart.detection.data import read_detection_data
from headstart.detection.synthetic import write_candy
from headstart.errors import HeadstartError

TINY = dict(model="mobilenet_v2", epochs=1, input_size=128, val_split=0.0)


@pytest.fixture(scope="module")
def candy(tmp_path_factory) -> Path:
    return write_candy(tmp_path_factory.mktemp("detect") / "candy", n_images=6, seed=0)


@pytest.fixture(scope="module")
def faster_run(candy, tmp_path_factory):
    import headstart

    return headstart.fit(candy, out=tmp_path_factory.mktemp("runs") / "faster", task="detect", detector="faster",
                         strategy="finetune", **{k: v for k, v in TINY.items()})


def test_fit_auto_detects_coco_and_writes_a_run(faster_run, candy):
    import headstart

    m = faster_run.metrics
    assert m["task"] == "detect" and m["detector"] == "faster" and m["n_train"] == 6
    info = json.loads((faster_run.dir / "headstart.json").read_text())
    assert info["status"] == "finished" and info["task"] == "detect"
    assert not (faster_run.dir / "checkpoint").exists()
    again = headstart.load(faster_run.dir)
    assert again.classes == faster_run.classes == read_detection_data(candy).classes
    with torch.no_grad():  # the loaded weights are the trained ones
        x = [torch.rand(3, 120, 150)]
        faster_run.model.eval()
        a, b = faster_run.model(x)[0], again.model(x)[0]
    assert torch.equal(a["boxes"], b["boxes"])


def test_evaluate_reports_coco_keys(faster_run, candy):
    import headstart

    r = headstart.evaluate(faster_run, candy)
    for key in ("map", "map_50", "map_75", "per_class_ap", "per_class_ap_50"):
        assert key in r
    assert set(r["per_class_ap"]) == set(faster_run.classes)
    assert r["n_images"] == 6 and r["n_boxes"] > 0


def test_evaluate_metrics_are_pycocotools_on_perfect_and_shifted_boxes(candy):
    """Ground truth as detections scores 1.0; boxes shifted by half their width score 0 at IoU .5."""
    from headstart.detection.evaluate import coco_metrics

    data = read_detection_data(candy)
    idx = np.arange(len(data))
    perfect = [{"boxes": torch.as_tensor(im.boxes), "scores": torch.ones(len(im.boxes)),
                "labels": torch.as_tensor(im.labels) + 1} for im in data.images]
    assert coco_metrics(perfect, data, idx)["map_50"] == pytest.approx(1.0)
    shifted = []
    for d in perfect:
        b = d["boxes"].clone()
        w = b[:, 2] - b[:, 0]
        b[:, 0] += w * 0.6
        b[:, 2] += w * 0.6
        shifted.append({**d, "boxes": b})
    assert coco_metrics(shifted, data, idx)["map_50"] == pytest.approx(0.0)


def test_predict_draws_pngs_and_json(faster_run, candy, tmp_path):
    import headstart

    files = sorted((candy / "images").iterdir())[:2]
    rows = headstart.predict(faster_run, files, out_dir=tmp_path / "drawn", score_threshold=0.0)
    assert len(rows) == 2 and all("detections" in r for r in rows)
    assert sorted(p.name for p in (tmp_path / "drawn").glob("*.png")) == sorted(f.stem + ".png" for f in files)
    saved = json.loads((tmp_path / "drawn" / "detections.json").read_text())
    assert [r["file"] for r in saved] == [str(f) for f in files]
    for d in saved[0]["detections"]:
        assert d["label"] in faster_run.classes and len(d["box"]) == 4


def test_mask_rcnn_when_data_has_masks(candy, tmp_path):
    import headstart

    run = headstart.fit(candy, out=tmp_path / "mask", task="detect", strategy="linear-probe", **TINY)
    assert run.metrics["detector"] == "mask"
    assert run.metrics["phases"][0]["frozen_units_cached"] == len(run.model.backbone.units)
    r = headstart.evaluate(run, candy)
    assert "mask_map" in r and "mask_per_class_ap" in r


def test_partial_freezes_backbone_groups_and_caches_the_prefix(candy, tmp_path):
    from headstart.detection.train import fit_detector

    run = fit_detector(candy, out=tmp_path / "p", strategy="partial:2", detector="faster", **TINY)
    phase = run.metrics["phases"][0]
    assert phase["trainable_groups"] == 2 and phase["groups"] == 5
    assert 0 < phase["frozen_units_cached"] < len(run.model.backbone.units)
    with pytest.raises(HeadstartError, match="partial:1 to partial:5"):
        fit_detector(candy, out=tmp_path / "p9", strategy="partial:9", detector="faster", **TINY)


def test_cached_prefix_gives_the_same_pyramid_as_the_full_body(candy):
    """A frozen prefix computed per image and placed into the batch equals the body run on the batch,
    away from the padding (the only difference: what padding the convolutions saw)."""
    from headstart.detection.model import DetectorSpec, build_detector
    from headstart.detection.inputs import PrefixCache, Samples, pyramid_for
    from headstart.zoo import get_card

    data = read_detection_data(candy)
    card = get_card("mobilenet_v2")
    spec = DetectorSpec(base="card", arch=card.architecture, kind="faster", classes=data.classes, min_size=128,
                        max_size=213)
    model = build_detector(spec, card).eval()
    s = Samples(data, model, False)
    items = [s[(i, False)][:3] for i in (0, 1)]
    same = [items[0], (items[0][0], True, items[0][2])]  # one image twice: no padding differences at all
    with torch.no_grad():
        _, full = pyramid_for(model.backbone, same, None, torch.device("cpu"))
        _, cached = pyramid_for(model.backbone, same, PrefixCache(model.backbone.groups[3][0]), torch.device("cpu"))
    for k in full:
        assert torch.allclose(full[k], cached[k], atol=1e-5), k


def test_killed_run_resumes_to_the_same_weights(candy, tmp_path, monkeypatch):
    import headstart
    from headstart.engine import Engine

    kw = dict(task="detect", detector="faster", strategy="finetune", model="mobilenet_v2", epochs=2,
              input_size=128, val_split=0.0)
    straight = headstart.fit(candy, out=tmp_path / "straight", **kw)
    original = Engine.train_epoch
    calls = {"n": 0}

    def dies_in_second_epoch(self, *a):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *a)

    monkeypatch.setattr(Engine, "train_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        headstart.fit(candy, out=tmp_path / "killed", **kw)
    monkeypatch.setattr(Engine, "train_epoch", original)
    assert json.loads((tmp_path / "killed" / "headstart.json").read_text())["status"] == "training"
    with pytest.raises(HeadstartError, match="--resume"):
        headstart.load(tmp_path / "killed")
    resumed = headstart.resume(tmp_path / "killed")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_two_processes_train_the_detector_one_process_trains(tmp_path):
    """--processes 2 (gloo on the CPU), the same global batch: each process takes half of every batch, each
    image's anchors and proposals are drawn from its own seed, DDP averages the gradients, and only the first
    process writes: the same detector as one process, within a tolerance. Not to the last bit: proposals are
    a discrete choice (top-k, NMS) that float rounding tips over, and the box heads average over the batch's
    sampled proposals. (Scenes of one size: a batch is padded to its largest image, and the padding's
    anchors would differ between batches of 2 and of 1.)"""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from headstart.detection.model import DetectorSpec, build_detector
    from headstart.zoo import get_card

    scenes = write_candy(tmp_path / "scenes", n_images=4, seed=3, jitter=0.0)
    exe = str(Path(sys.executable).parent / "headstart")
    cmd = [exe, "fit", str(scenes), "--task", "detect", "--detector", "faster", "--model", "mobilenet_v2",
           "--strategy", "finetune", "--epochs", "2", "--input-size", "128", "--val-split", "0", "--batch-size", "2",
           "--json"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    one = subprocess.run(cmd + ["--out", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(cmd + ["--out", str(tmp_path / "two"), "--processes", "2"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["task"] == "detect"  # one result, printed once
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(tmp_path / "two" / "model.safetensors"))
    info = json.loads((tmp_path / "one" / "headstart.json").read_text())
    torch.manual_seed(0)
    start = build_detector(DetectorSpec.from_dict(info["spec"]), get_card("mobilenet_v2")).state_dict()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    moved = max(float((a[k].float() - start[k].float()).abs().max()) for k in a if k in start)
    # Measured: 1% of how far training moved the weights; 18% with torchvision's batch-wide sampling of
    # anchors and proposals, 57% without averaging the gradients.
    assert worst < 0.05 * moved, (worst, moved)


def test_a_batch_that_processes_cannot_share_is_refused(monkeypatch):
    from headstart.detection.train import check_processes

    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(HeadstartError, match="--batch-size 4 cannot be shared by 3 processes"):
        check_processes(4)
    check_processes(6)


def test_cli_fit_evaluate_predict(candy, tmp_path, capsys):
    out = tmp_path / "cli-run"
    assert main(["fit", str(candy / "annotations.json"), "--out", str(out), "--model", "mobilenet_v2", "--epochs",
                 "1", "--input-size", "128", "--val-split", "0", "--detector", "faster", "--quiet"]) == 0
    assert "Faster R-CNN from mobilenet_v2" in capsys.readouterr().out
    assert main(["evaluate", str(out), str(candy), "--json", "--quiet"]) == 0
    assert "map_50" in json.loads(capsys.readouterr().out)
    assert main(["predict", str(out), str(candy / "images"), "--out", str(tmp_path / "drawn"), "--quiet"]) == 0
    assert (tmp_path / "drawn" / "detections.json").is_file()


def test_cli_bad_detection_input_is_one_line_exit_2(candy, tmp_path, capsys):
    coco = json.loads((candy / "annotations.json").read_text())
    coco["annotations"][0]["bbox"] = [5, 5, 0, 10]  # zero width
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "annotations.json").write_text(json.dumps(coco))
    (bad / "images").symlink_to(candy / "images")
    args = ["fit", str(bad), "--out", str(tmp_path / "r"), "--epochs", "1", "--input-size", "128", "--val-split", "0",
            "--detector", "faster", "--model", "mobilenet_v2", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--skip-bad" in err
    assert not (tmp_path / "r").exists()
    assert main(args + ["--skip-bad"]) == 0  # the box is dropped, the image stays


def test_text_model_for_detection_is_refused(candy, tmp_path):
    from headstart.detection.train import fit_detector

    with pytest.raises(HeadstartError, match="image model"):
        fit_detector(candy, "minilm_l6", tmp_path / "x", epochs=1)


# ------------------------------------------------------------------------------ torchvision checkpoints
@pytest.fixture(scope="module")
def coco_checkpoint(tmp_path_factory) -> Path:
    """A torchvision fasterrcnn_mobilenet_v3_large_fpn state_dict with COCO's 91 outputs (random
    weights: no COCO weights exist offline); its 'person' row is recognisable."""
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.get_model("fasterrcnn_mobilenet_v3_large_fpn", weights=None, weights_backbone=None,
                                     num_classes=91)
    sd = m.state_dict()
    sd["roi_heads.box_predictor.cls_score.bias"][1] = 7.0  # person
    path = tmp_path_factory.mktemp("ckpt") / "coco_frcnn.pth"
    torch.save(sd, path)
    return path


def test_checkpoint_start_replaces_predictor_and_reuses_same_named_rows(candy, coco_checkpoint, tmp_path):
    from headstart.detection.train import fit_detector

    coco = json.loads((candy / "annotations.json").read_text())
    coco["categories"][0]["name"] = "person"  # a new class with a COCO name
    d = tmp_path / "named"
    d.mkdir()
    (d / "annotations.json").write_text(json.dumps(coco))
    (d / "images").symlink_to(candy / "images")
    run = fit_detector(d, str(coco_checkpoint), tmp_path / "run", epochs=1, input_size=128, val_split=0.0,
                       detector="faster", strategy="linear-probe", lr=1e-9)
    assert run.metrics["start"]["architecture"] == "fasterrcnn_mobilenet_v3_large_fpn"
    assert run.metrics["start"]["reused_classes"] == ["person"]
    cls = run.model.roi_heads.box_predictor.cls_score
    assert cls.out_features == 5
    assert float(cls.bias[1].detach()) == pytest.approx(7.0, abs=1e-3)  # person's row came along (lr ~ 0)


def test_checkpoint_of_another_architecture_names_what_differs(candy, coco_checkpoint, tmp_path):
    from headstart.detection.train import fit_detector

    with pytest.raises(HeadstartError, match="does not fit --arch fasterrcnn_resnet50_fpn"):
        fit_detector(candy, str(coco_checkpoint), tmp_path / "r", arch="fasterrcnn_resnet50_fpn", epochs=1)
    sd = torch.load(coco_checkpoint, weights_only=True)
    sd["roi_heads.box_predictor.cls_score.weight"] = sd["roi_heads.box_predictor.cls_score.weight"][:10]
    broken = tmp_path / "broken.pth"
    torch.save(sd, broken)
    with pytest.raises(HeadstartError, match=r"cls_score|matches no torchvision detector"):
        fit_detector(candy, str(broken), tmp_path / "r2", epochs=1)


def test_checkpoint_class_list_of_the_wrong_length(candy, coco_checkpoint, tmp_path):
    from headstart.detection.train import fit_detector

    sd = torch.load(coco_checkpoint, weights_only=True)
    path = tmp_path / "with_classes.pth"
    torch.save({"model": sd, "classes": ["__background__", "person"]}, path)
    with pytest.raises(HeadstartError, match="91 outputs .* 2 names"):
        fit_detector(candy, str(path), tmp_path / "r", epochs=1, input_size=128)


def test_demo_detect_small_variant(tmp_path, capsys):
    assert main(["demo", "--task", "detect", "--dir", str(tmp_path), "--train-images", "6", "--test-images", "2",
                 "--epochs", "1", "--input-size", "128", "--json", "--quiet"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_train"] == 6 and d["n_test"] == 2 and d["model"] == "mobilenet_v2"
    assert 0.0 <= d["map_50"] <= 1.0
    assert list(Path(d["drawn_dir"]).glob("*.png"))
    coco = json.loads((Path(d["train_dir"]) / "annotations.json").read_text())
    assert {c["name"] for c in coco["categories"]} == {"chocolate_bar", "lollipop", "gummy_bear", "mint"}


def test_classification_commands_refuse_detection_data(candy, tmp_path):
    import headstart

    with pytest.raises(HeadstartError, match="--task detect"):
        headstart.rank_models(candy)
    with pytest.raises(HeadstartError, match="--task detect"):
        headstart.fit(candy, out=tmp_path / "c", task="classify")


def test_resume_refuses_other_options(candy, tmp_path, monkeypatch):
    import headstart
    from headstart.engine import Engine

    def dies(self, *a):
        raise KeyboardInterrupt

    monkeypatch.setattr(Engine, "train_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        headstart.fit(candy, out=tmp_path / "k", task="detect", detector="faster", **TINY)
    with pytest.raises(HeadstartError, match="--lr 0.5 .the run used 0.01"):
        headstart.resume(tmp_path / "k", given={"lr": 0.5})


def test_training_options_of_the_engine_apply_to_detection(candy, tmp_path):
    """--l2sp, --accumulate, --patience and --tracker reach a detector's training (the one engine), where
    they used to be dropped without a word."""
    import headstart

    run = headstart.fit(candy, out=tmp_path / "opts", task="detect", detector="faster", strategy="finetune",
                        model="mobilenet_v2", epochs=3, input_size=128, val_split=0.34, eval_every=1, l2sp=0.01,
                        accumulate=2, patience=1, tracker="tensorboard")
    cfg = run.metrics["config"]
    assert cfg["l2sp"] == 0.01 and cfg["accumulate"] == 2 and cfg["patience"] == 1 and cfg["optimizer"] == "sgd"
    assert list((tmp_path / "opts" / "logs").rglob("events.out.tfevents*"))
    history = run.metrics["history"]
    assert all("val_map" in h for h in history)
    maps = [(h["val_map"], h["val_map_50"]) for h in history]
    stopped = run.metrics["stopped_early"]
    # patience 1: it stops after the first validation that is not better than the best so far
    assert stopped == (len(history) < 3) and (not stopped or maps[-1] <= max(maps[:-1]))


def test_options_of_another_task_are_refused_in_one_line(candy, tmp_path, shapes_dir, capsys):
    base = ["fit", str(candy), "--out", str(tmp_path / "d"), "--model", "mobilenet_v2", "--quiet"]
    for extra, named in ((["--head", "mlp"], "--head"), (["--no-class-balance"], "--no-class-balance"),
                         (["--dropout", "0.3"], "--dropout"), (["--augment", "crop"], "--augment crop"),
                         (["--head-c", "1"], "--head-c"), (["--budget", "10"], "--budget")):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and named in err and "detection" in err, err
    assert not (tmp_path / "d").exists()
    for extra, named in ((["--eval-every", "2"], "--eval-every"), (["--detector", "mask"], "--detector"),
                         (["--input-size", "128"], "--input-size"), (["--head-epochs", "2"], "--head-epochs")):
        assert main(["fit", str(shapes_dir), "--out", str(tmp_path / "c"), "--quiet"] + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and named in err and "classification" in err, err
    assert not (tmp_path / "c").exists()
