"""The YOLO detector (--detector yolo): assignment and decoding, its loss, fit / load / evaluate / predict /
resume / export on tiny synthetic candy. benchmarks/bench_yolo.py measures what it reaches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.cli import main
from headstart.detection.synthetic import write_candy
from headstart.detection.yolo import (STRIDES, YoloDetector, assign, decode_at, encode, kmeans_anchors,
                                      scaled_default_anchors)
from headstart.errors import HeadstartError

TINY = dict(model="mobilenet_v2", epochs=1, input_size=128, val_split=0.0)


@pytest.fixture(scope="module")
def candy(tmp_path_factory) -> Path:
    return write_candy(tmp_path_factory.mktemp("yolo") / "candy", n_images=6, seed=0)


@pytest.fixture(scope="module")
def yolo_run(candy, tmp_path_factory):
    import headstart

    return headstart.fit(candy, out=tmp_path_factory.mktemp("runs") / "yolo", task="detect", detector="yolo",
                         strategy="finetune", **TINY)


def small_detector(num_classes: int = 2, min_size: int = 128) -> YoloDetector:
    from headstart.detection.model import DetectorSpec, build_detector
    from headstart.zoo import get_card

    card = get_card("mobilenet_v2")
    spec = DetectorSpec(base="card", arch=card.architecture, kind="yolo", classes=tuple("abcd"[:num_classes]),
                        min_size=min_size, max_size=min_size * 2, anchors=scaled_default_anchors(min_size))
    torch.manual_seed(0)
    model = build_detector(spec, card)
    assert isinstance(model, YoloDetector)
    return model


def test_assignment_and_decoding_are_inverse_on_a_known_box():
    """A box is assigned at its own cell and the neighbours nearest its centre, to anchors within 4x its
    size; encoding it there and decoding gives it back; raw maps saying exactly that decode, through the
    threshold and NMS, to the one box with its label."""
    anchors = torch.tensor(scaled_default_anchors(256))
    box = torch.tensor([[50.0, 60.0, 110.0, 100.0]])  # centre (80, 80), 60 x 40
    targets = [{"boxes": box, "labels": torch.tensor([2])}]
    size = (256, 320)
    raw = []
    for lvl, stride in enumerate(STRIDES):
        h, w = size[0] // stride, size[1] // stride
        b, a, gj, gi, boxes, cls = assign(targets, anchors[lvl], stride, (h, w))
        ratio = torch.tensor([60.0, 40.0]) / anchors[lvl]
        fits = (torch.max(ratio, 1 / ratio).amax(dim=1) < 4).nonzero().flatten().tolist()
        assert sorted(set(a.tolist())) == fits
        for k in fits:  # the centre cell and its two nearest neighbours (left or right, above or below)
            cx, cy = int(80 // stride), int(80 // stride)
            nx = cx - 1 if (80 / stride) % 1 < 0.5 else cx + 1
            ny = cy - 1 if (80 / stride) % 1 < 0.5 else cy + 1
            got = {(int(j), int(i)) for j, i, aa in zip(gj, gi, a) if aa == k}
            assert got == {(cy, cx), (cy, nx), (ny, cx)}, (stride, k, got)
        assert (cls == 1).all() and (b == 0).all() and torch.equal(boxes, box.expand(len(b), 4))
        cells = torch.stack([gi, gj], dim=1).float()
        t = encode(boxes, cells, anchors[lvl][a], stride)
        assert torch.allclose(decode_at(t, cells, anchors[lvl][a], stride), boxes, atol=1e-3)
        p = torch.full((1, 3, h, w, 5 + 3), -12.0)
        p[b, a, gj, gi, :4] = t
        p[b, a, gj, gi, 4] = 12.0
        p[b, a, gj, gi, 5 + cls] = 12.0
        raw.append(p)
    body = torch.nn.Identity()
    body.out_channels = 8
    model = YoloDetector(body, 3, scaled_default_anchors(256), 256, 427, (0.5,) * 3, (0.25,) * 3)
    model.head.forward = lambda maps: raw  # type: ignore[method-assign]
    (found,) = model.detections({"0": torch.zeros(1)}, [size])
    assert found["labels"].tolist() == [2] and float(found["scores"][0]) > 0.99
    assert torch.allclose(found["boxes"], box, atol=1e-3)


def test_kmeans_anchors_follow_the_boxes_and_fall_back_to_the_defaults():
    rng = np.random.default_rng(0)
    small, large = rng.uniform(10, 14, size=(30, 2)), rng.uniform(90, 110, size=(30, 2))
    anchors = kmeans_anchors(np.concatenate([small, large]), 256)
    sides = [np.sqrt(w * h) for level in anchors for w, h in level]
    assert sides == sorted(sides) and 9 < sides[0] < 15 and 85 < sides[-1] < 115
    assert kmeans_anchors(small[:5], 256) == scaled_default_anchors(256)


def test_the_loss_falls_when_training_on_one_image(candy):
    from headstart.detection.data import read_detection_data
    from headstart.detection.inputs import Samples

    model = small_detector(4)
    data = read_detection_data(candy)
    i = next(k for k, im in enumerate(data.images) if len(im.boxes))
    _, _, img, target = Samples(data, model, False)[(i, False)]
    with torch.no_grad():  # the body's units as they are (the pyramid and the head learn): a few seconds
        _, body = model.backbone.trunk(img[None])
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("backbone.units")], lr=1e-3)
    losses = []
    for _ in range(15):
        loss = sum(model.losses(model.backbone.pyramid(body), [tuple(img.shape[-2:])], [target]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.65 * losses[0], losses


def test_a_batch_s_loss_is_the_mean_of_its_images_losses(candy):
    """Losses are averages per image, the batch's padding left out: an image's losses are the same in a batch
    (padded to a larger neighbour) as on its own map (but for what the padding's features do to the head's
    convolutions at the image's border: zero here, as the convolutions' own padding)."""
    model = small_detector(4)
    sizes = [(100, 120), (128, 160)]  # the first is padded to the second's 128 x 160
    torch.manual_seed(1)
    feats = {str(k): torch.randn(2, model.backbone.out_channels, 16 // 2 ** k, 20 // 2 ** k) for k in range(3)}
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 50.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[70.0, 40.0, 150.0, 120.0]]), "labels": torch.tensor([3])}]
    cells = [{k: (-(-h // 2 ** (3 + int(k))), -(-w // 2 ** (3 + int(k)))) for k in feats} for h, w in sizes]
    for k, v in feats.items():  # the padding's features zero, as the head's convolutions pad a map on its own
        h, w = cells[0][k]
        v[0, :, h:], v[0, :, :, w:] = 0, 0
    own = [{k: v[i:i + 1, :, : cells[i][k][0], : cells[i][k][1]] for k, v in feats.items()} for i in range(2)]
    with torch.no_grad():
        both = model.losses(feats, sizes, targets)
        alone = [model.losses(own[i], [sizes[i]], [targets[i]]) for i in range(2)]
    for k in both:
        assert float(alone[0][k]) > 0 and float(alone[1][k]) > 0
        assert torch.allclose(both[k], (alone[0][k] + alone[1][k]) / 2, atol=1e-6), k


def test_fit_writes_a_yolo_run_that_load_evaluate_and_predict_use(yolo_run, candy, tmp_path):
    import headstart

    m = yolo_run.metrics
    assert m["task"] == "detect" and m["detector"] == "yolo" and m["n_train"] == 6
    info = json.loads((yolo_run.dir / "headstart.json").read_text())
    assert info["spec"]["kind"] == "yolo" and len(info["spec"]["anchors"]) == 3
    again = headstart.load(yolo_run.dir)
    assert isinstance(again.model, YoloDetector) and again.spec == yolo_run.spec
    x = [torch.rand(3, 120, 150)]
    yolo_run.model.eval().score_thresh = again.model.score_thresh = 0.0
    with torch.no_grad():
        a, b = yolo_run.model(x)[0], again.model(x)[0]
    assert len(a["boxes"]) and torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])
    assert a["labels"].min() >= 1 and a["labels"].max() <= len(yolo_run.classes)
    assert (a["boxes"][:, 2] <= 150).all() and (a["boxes"][:, 3] <= 120).all()  # in the image's own pixels
    r = headstart.evaluate(again, candy)
    assert {"map", "map_50", "per_class_ap"} <= set(r) and r["n_images"] == 6
    files = sorted((candy / "images").iterdir())[:2]
    rows = headstart.predict(again, files, out_dir=tmp_path / "drawn", score_threshold=0.0)
    assert len(rows) == 2 and all(d["label"] in yolo_run.classes for r in rows for d in r["detections"])
    assert sorted(p.name for p in (tmp_path / "drawn").glob("*.png")) == sorted(f.stem + ".png" for f in files)
    assert (tmp_path / "drawn" / "detections.json").is_file()


def test_killed_yolo_run_resumes_to_the_same_weights(candy, tmp_path):
    import headstart

    from conftest import stopped_after_checkpoint

    kw = dict(task="detect", detector="yolo", strategy="partial:3", model="mobilenet_v2", epochs=2,
              input_size=128, val_split=0.0, batch_size=2)
    straight = headstart.fit(candy, out=tmp_path / "straight", **kw)
    with stopped_after_checkpoint(lambda s: s.global_epoch == 1):
        headstart.fit(candy, out=tmp_path / "killed", **kw)
    resumed = headstart.resume(tmp_path / "killed")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.spec == straight.spec


def test_cli_names_yolo_and_bad_detectors_end_in_one_line(candy, tmp_path, capsys):
    args = ["fit", str(candy), "--out", str(tmp_path / "r"), "--model", "mobilenet_v2", "--epochs", "1",
            "--input-size", "128", "--val-split", "0", "--quiet"]
    assert main(args + ["--detector", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "yolo" in err and not (tmp_path / "r").exists()
    assert main(["fit", "--help"]) == 0
    assert "yolo" in capsys.readouterr().out
    from headstart.detection.train import fit_detector

    with pytest.raises(HeadstartError, match="--detector must be one of auto, faster, mask, yolo; got 'yol'"):
        fit_detector(candy, "mobilenet_v2", tmp_path / "x", detector="yol", epochs=1)
    assert main(args + ["--detector", "yolo"]) == 0
    assert "YOLO from mobilenet_v2" in capsys.readouterr().out


def test_yolo_needs_a_zoo_card(candy, tmp_path):
    from headstart.detection.train import fit_detector

    ckpt = tmp_path / "frcnn.pth"
    torch.save({"roi_heads.box_predictor.cls_score.weight": torch.zeros(2, 4)}, ckpt)
    with pytest.raises(HeadstartError, match="--detector yolo trains on a zoo card"):
        fit_detector(candy, f"file:{ckpt}", tmp_path / "x", detector="yolo", epochs=1)


def test_yolo_exports_to_onnx_with_the_same_detections(yolo_run, candy, tmp_path, monkeypatch):
    import headstart
    from headstart.export import export_run

    pytest.importorskip("onnxruntime")
    # one epoch on six scenes scores every candy below 1e-3: a lower threshold, so that there are detections to compare
    monkeypatch.setattr("headstart.detection.yolo.SCORE_THRESHOLD", 3e-4)
    out = export_run(yolo_run.dir, "onnx", tmp_path / "y.onnx")  # checked against PyTorch before it is written
    assert out.path.is_file() and out.metadata["detector"]["name"] == "YOLO"
    assert len(out.metadata["detector"]["anchors"]) == 3 and sum(out.check["detections"]) > 0
    files = sorted((candy / "images").iterdir())[:3]
    ref = headstart.load(yolo_run.dir).predict(files, score_threshold=3e-4)
    got = headstart.predict(out.path, files, score_threshold=3e-4)
    assert sum(len(r["detections"]) for r in ref) > 0
    for g, r in zip(got, ref, strict=True):
        assert [d["label"] for d in g["detections"]] == [d["label"] for d in r["detections"]]
        for a, b in zip(g["detections"], r["detections"]):
            assert abs(a["score"] - b["score"]) <= 2e-4 and max(abs(u - v) for u, v in zip(a["box"], b["box"])) <= 0.11
    with pytest.raises(HeadstartError, match="ONNX only"):
        export_run(yolo_run.dir, "torchscript", tmp_path / "y.pt")


def test_yolo_body_ends_before_the_classifier_s_widening_layer():
    """mobilenet_v2's last unit only widens 320 channels to 1280 for its classifier: YOLO's stride-32 level is the
    unit before it; Faster R-CNN keeps the body as it was."""
    from headstart.detection.model import DetectorSpec, build_detector
    from headstart.zoo import get_card

    card = get_card("mobilenet_v2")
    spec = DetectorSpec(base="card", arch=card.architecture, kind="faster", classes=("a",), min_size=128,
                        max_size=256)
    faster = build_detector(spec, card, pretrained=False).backbone
    yolo = small_detector().backbone
    assert len(yolo.units) == len(faster.units) - 1 and yolo.levels[-1] == len(yolo.units) - 1
    assert yolo.fpn.inner_blocks[-1][0].in_channels == 320 and faster.fpn.inner_blocks[-1][0].in_channels == 1280


def test_demo_trains_yolo_when_asked(tmp_path, capsys):
    assert main(["demo", "--task", "detect", "--detector", "yolo", "--dir", str(tmp_path), "--train-images", "6",
                 "--test-images", "2", "--epochs", "1", "--input-size", "128"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("YOLO from mobilenet_v2 (ImageNet) -> 4 kinds of candy, 6 training scenes")
    info = json.loads((tmp_path / "detect-run" / "headstart.json").read_text())
    assert info["spec"]["kind"] == "yolo"
