"""A Darknet network trained for new classes (`--model darknet:CFG[,WEIGHTS[,NAMES]]`) and written back as
Darknet files: small generated networks (test_darknet's shapes) with random weights, small candy scenes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_darknet import TINY_V3, TINY_V4, make_net

from headstart.cli import main
from headstart.darknet import load_darknet, read_cfg
from headstart.detection.darknet_yolo import DarknetDetector, for_classes, heads_of, start_from_darknet
from headstart.detection.synthetic import write_candy

CLASSES = ("chocolate_bar", "lollipop", "gummy_bear", "mint")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return write_candy(tmp_path_factory.mktemp("candy") / "scenes", 6, seed=3, size=(128, 96))


def test_new_classes_keep_box_rows_and_the_rows_of_a_class_of_the_same_name(tmp_path):
    cfg, weights = make_net(tmp_path, "v3", TINY_V3)
    source = load_darknet(cfg, weights)
    new, reused = for_classes(source, ("a", "mint", "b"), ["car", "mint"])
    assert reused == ["mint"]
    for (conv, yolo), (conv2, yolo2) in zip(heads_of(source), heads_of(new)):
        assert conv == conv2 and yolo2.classes == 3 and yolo.classes == 2
        old, mine = source.layers[conv].conv, new.layers[conv].conv
        assert mine.out_channels == 3 * (5 + 3)
        for a in range(3):
            for r in range(5):  # box and objectness rows
                assert torch.equal(mine.weight[a * 8 + r], old.weight[a * 7 + r])
            assert torch.equal(mine.weight[a * 8 + 5 + 1], old.weight[a * 7 + 5 + 1])  # mint: new 1 <- old 1
            assert not torch.equal(mine.weight[a * 8 + 5], old.weight[a * 7 + 5])  # 'a' is no 'car'
    body = {k: v for k, v in source.state_dict().items() if not k.startswith(tuple(f"layers.{c}." for c, _ in
                                                                                  heads_of(source)))}
    got = new.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in body.items())


@pytest.mark.parametrize("text", [TINY_V3, TINY_V4], ids=["yolov3-tiny", "yolov4-tiny"])
def test_boxes_are_decoded_as_darknet_decodes_them(tmp_path, text):
    cfg, weights = make_net(tmp_path, "net", text)
    model = load_darknet(cfg, weights)
    det = DarknetDetector(model, 64, 64).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        maps = model(x)
        theirs = model.decode(maps)  # x, y, w, h as fractions of the input; rows in (row, column, anchor) order
        raw = det.head(det.levels(det.backbone(x)))
    for level, layer in enumerate(det.output_layers):
        k = [i for i, _ in model.yolo_layers].index(layer + 1)
        boxes = det.decode_level(raw[level], level).permute(0, 2, 3, 1, 4).reshape(1, -1, 4)  # row, column, anchor
        t = theirs[k][..., :4] * 64
        want = torch.cat([t[..., :2] - t[..., 2:] / 2, t[..., :2] + t[..., 2:] / 2], dim=-1)
        assert torch.allclose(boxes, want, atol=1e-4), (boxes - want).abs().max()


def test_body_resumes_from_a_cached_prefix_at_any_group(tmp_path):
    cfg, weights = make_net(tmp_path, "v4", TINY_V4)
    det = DarknetDetector(load_darknet(cfg, weights), 64, 64).eval()
    body = det.backbone
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        whole = body(x)
        for group in body.groups:
            first, collected = body.trunk(x, 0, group[0])
            rest = body.pyramid(body.trunk(first, group[0], None, collected)[1])
            assert all(torch.equal(rest[k], whole[k]) for k in whole)


def test_fit_evaluate_export_back_to_darknet(tmp_path, scenes):
    cfg, weights = make_net(tmp_path, "v3", TINY_V3)
    names = tmp_path / "v3.names"
    names.write_text("mint\ncar\n")
    run = tmp_path / "run"
    assert main(["fit", str(scenes), "--model", f"darknet:{cfg},{weights},{names}", "--input-size", "64",
                 "--epochs", "2", "--out", str(run)]) == 0
    info = json.loads((run / "headstart.json").read_text())
    assert info["spec"]["base"] == "darknet" and info["spec"]["kind"] == "yolo"
    assert info["start"]["reused_classes"] == ["mint"] and info["strategy"] == "partial:3"
    assert main(["evaluate", str(run), str(scenes), "--json"]) == 0
    drawn = tmp_path / "drawn"
    assert main(["predict", str(run), str(scenes / "images"), "--out", str(drawn)]) == 0
    assert len(list(drawn.glob("*.png"))) == 6 and (drawn / "detections.json").is_file()
    out = tmp_path / "back.cfg"
    assert main(["export", str(run), "--format", "darknet", "--out", str(out)]) == 0
    assert (tmp_path / "back.names").read_text().split() == list(CLASSES)
    back = load_darknet(out, tmp_path / "back.weights")
    net = read_cfg(out)[0].options
    assert net["width"] == net["height"] == "64"
    assert [y.classes for _, y in back.yolo_layers] == [4, 4]
    import headstart

    det = headstart.load(run).model
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ours = det.head(det.levels(det.backbone(x)))
        theirs = back(x)
    for level, layer in enumerate(det.output_layers):
        k = [i for i, _ in back.yolo_layers].index(layer + 1)
        assert torch.allclose(ours[level].permute(0, 1, 4, 2, 3).reshape(theirs[k].shape), theirs[k], atol=1e-5)
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 0


def test_a_cfg_alone_trains_every_layer_from_random_weights(tmp_path, scenes):
    cfg, _ = make_net(tmp_path, "v4", TINY_V4)
    run = tmp_path / "run"
    assert main(["fit", str(scenes), "--model", f"darknet:{cfg}", "--input-size", "64", "--epochs", "1",
                 "--val-split", "0", "--out", str(run)]) == 0
    info = json.loads((run / "headstart.json").read_text())
    assert info["strategy"] == "finetune" and "no weights" in info["strategy_reason"]
    assert info["config"]["bn"] == "train"  # random weights have no BatchNorm statistics to keep
    assert info["start"]["weights"] is None and info["start"]["reused_classes"] == []


def test_an_80_class_network_without_names_reads_as_coco(tmp_path):
    text = TINY_V3.replace("classes=2", "classes=80").replace("filters=21", "filters=255")
    cfg, weights = make_net(tmp_path, "coco", text)
    det, _, start = start_from_darknet(f"darknet:{cfg},{weights}", ("person", "mint"), 64, 107)
    assert start["source_classes_known"] and start["reused_classes"] == ["person"]
    assert det.num_classes == 2
