"""headstart.darknet: .cfg + .weights in and out, checked against an independent reader (OpenCV's
cv2.dnn.readNetFromDarknet) on tiny networks with the layer types of YOLOv3, YOLOv3-tiny, YOLOv4-tiny and
YOLOv4, a byte-exact round trip, and one-line errors for broken files."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.darknet import (DarknetModel, load_darknet, parse_cfg, plan_layers, read_cfg, save_darknet,
                               weights_bytes)
from headstart.darknet.spec import Conv
from headstart.errors import HeadstartError

cv2 = pytest.importorskip("cv2")

THRESH = 0.2  # OpenCV zeroes yolo class scores not above the [yolo] section's thresh=, 0.2 by default

# yolov3-tiny's shape: a stack of convolutions and 2x2 pools, the size=2 stride=1 pool that keeps the size
# (Darknet pads it on the right and bottom), two heads joined by a route and an upsample.
TINY_V3 = """
[net]
# training options, kept and ignored
batch=1
subdivisions=1
width=64
height=64
channels=3
momentum=0.9
learning_rate=0.001

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=64
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=1

[convolutional]
batch_normalize=1
filters=64
size=1
stride=1
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 3,4,5
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=2
num=6
jitter=.3
ignore_thresh = .7
random=1

[route]
layers = -3

[convolutional]
batch_normalize=1
filters=32
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers = -1, 6

[convolutional]
batch_normalize=1
filters=64
size=3
stride=1
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 0,1,2
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=2
num=6
"""

# yolov4-tiny's shape: routes that keep the second half of the channels (groups=2 group_id=1), leaky and
# mish, heads with scale_x_y.
TINY_V4 = """
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[route]
layers = -1,-2

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[route]
layers = -6,-1

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=mish

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=mish

[convolutional]
size=1
stride=1
pad=1
filters=24
activation=linear

[yolo]
mask = 3,4,5
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=3
num=6
scale_x_y = 1.05
iou_loss=ciou
nms_kind=greedynms

[route]
layers = -3

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers = -1, 7

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=24
activation=linear

[yolo]
mask = 1,2,3
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=3
num=6
scale_x_y = 1.05
"""

# A piece of yolov3 / yolov4: residual blocks (shortcut), swish, yolov4's SPP pool (size=5 stride=1, padded
# two cells each side), an upsample and two heads of nine anchors; comments, odd spacing and a repeated
# key as people write them.
V3_PIECE = """
; a comment of the other kind
[net]
width = 64
height= 64
channels =3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
filters=8
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=swish

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[convolutional]
batch_normalize=1
filters=64
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=64
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

### SPP ###
[maxpool]
stride=1
size=5

[route]
layers=-1,-2

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 6,7,8
anchors = 10,13,  16,30,  33,23,  30,61,  62,45,  59,119,  116,90,  156,198,  373,326
classes=2
num=9

[route]
layers = -4

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers = -1,   8

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 3,4,5
anchors = 10,13,  16,30,  33,23,  30,61,  62,45,  59,119,  116,90,  156,198,  373,326
classes=2
num=9
"""

# No yolo layer: the raw output of the last convolution compares directly (grouped convolution,
# logistic, a convolution with a bias and no batch norm, odd sizes and a stride-3 pool).
BACKBONE = """
[net]
width=45
height=37
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=logistic

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
groups=2
activation=leaky

[maxpool]
size=3
stride=3

[convolutional]
filters=6
size=3
stride=1
pad=0
activation=linear
"""

NETS = {"yolov3-tiny": TINY_V3, "yolov4-tiny": TINY_V4, "yolov3-piece": V3_PIECE}


def random_weights(cfg: Path, path: Path, seed: int = 0, header: tuple[int, int, int, int] = (0, 2, 5, 12345)) -> None:
    """A .weights file for `cfg` with random parameters that keep activations near 1. The parameter shapes
    come from headstart's own plan; OpenCV reads the same file by its own walk, so a wrong layout would
    show as outputs that differ."""
    rng = np.random.default_rng(seed)
    major, minor = header[:2]
    chunks = [struct.pack("<iiiQ" if major * 10 + minor >= 2 else "<iiii", *header)]
    for spec in plan_layers(read_cfg(cfg), str(cfg)).layers:
        if not isinstance(spec, Conv):
            continue
        n = spec.filters
        parts = [rng.normal(0, 0.1, n)]  # biases
        if spec.batch_normalize:  # scales, running means, running variances (positive)
            parts += [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)]
        fan_in = int(np.prod(spec.weight_shape[1:]))
        parts.append(rng.normal(0, 1 / np.sqrt(fan_in), spec.weight_shape))
        chunks += [np.asarray(p, dtype="<f4").tobytes() for p in parts]
    path.write_bytes(b"".join(chunks))


def make_net(tmp_path: Path, name: str, text: str, seed: int = 0) -> tuple[Path, Path]:
    cfg, weights = tmp_path / f"{name}.cfg", tmp_path / f"{name}.weights"
    cfg.write_text(text)
    random_weights(cfg, weights, seed)
    return cfg, weights


def image(width: int, height: int, seed: int = 1) -> np.ndarray:
    """A (1, 3, H, W) float image as cv2.dnn.blobFromImage makes it (scale 1/255, no swap, no crop)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.dnn.blobFromImage(pixels, 1 / 255, (width, height), swapRB=False, crop=False)


def opencv_outputs(cfg: Path, weights: Path, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(x)
    return list(net.forward(names))


def assert_close(ours: np.ndarray, theirs: np.ndarray, what: str) -> float:
    """Within 1e-4, absolute for values up to 1 and relative above (box sizes are exp() of the map).
    Returns the largest absolute difference."""
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    diff = np.abs(ours - theirs)
    worst = np.unravel_index(np.argmax(diff / np.maximum(1, np.abs(theirs))), diff.shape)
    assert np.all(diff <= 1e-4 * np.maximum(1, np.abs(theirs))), (what, worst, ours[worst], theirs[worst])
    return float(diff.max())


@pytest.mark.parametrize("name", sorted(NETS))
def test_yolo_outputs_match_opencv(tmp_path, name):
    cfg, weights = make_net(tmp_path, name, NETS[name])
    model = load_darknet(cfg, weights)
    x = image(model.net.width, model.net.height)
    with torch.no_grad():
        decoded = model.decode(model(torch.from_numpy(x)), thresh=THRESH)
    names = [f"yolo_{i}" for i, _ in model.yolo_layers]  # OpenCV names a yolo layer by Darknet's number
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    assert sorted(net.getUnconnectedOutLayersNames()) == sorted(names)
    theirs = opencv_outputs(cfg, weights, x, names)
    assert len(decoded) == len(theirs) == 2
    for (index, head), ours, rows in zip(model.yolo_layers, decoded, theirs, strict=True):
        ours = ours[0].numpy()  # OpenCV's rows: one per cell and anchor, x, y, w, h, objectness, scores
        assert rows.shape == (len(head.mask) * model.plan.shapes[index][1] * model.plan.shapes[index][2],
                              5 + head.classes)
        assert_close(ours[:, :5], rows[:, :5], f"{name} layer {index} boxes")
        # A score within float rounding of the threshold may fall either side of it in the two readers.
        scores, cv_scores = ours[:, 5:], rows[:, 5:]
        edge = np.abs(np.where(scores > 0, scores, cv_scores) - THRESH) < 1e-5
        assert edge.mean() < 0.01
        assert_close(np.where(edge, 0, scores), np.where(edge, 0, cv_scores), f"{name} layer {index} scores")
        assert (scores == 0).any() and (scores > THRESH).any()  # the threshold was met both ways


def test_raw_maps_match_opencv_without_yolo(tmp_path):
    cfg, weights = make_net(tmp_path, "backbone", BACKBONE)
    model = load_darknet(cfg, weights)
    x = image(45, 37)
    with torch.no_grad():
        (ours,) = model(torch.from_numpy(x))
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    (name,) = net.getUnconnectedOutLayersNames()
    (theirs,) = opencv_outputs(cfg, weights, x, [name])
    assert ours.shape == theirs.shape == (1, *model.plan.shapes[-1]) == (1, 6, 5, 6)
    assert_close(ours.numpy(), theirs, "last convolution")


def test_raw_head_map_matches_opencv_convolution(tmp_path):
    """The map a yolo layer passes on is the convolution before it, as OpenCV computes that convolution."""
    cfg, weights = make_net(tmp_path, "tiny", TINY_V3)
    model = load_darknet(cfg, weights)
    x = image(64, 64)
    with torch.no_grad():
        ours = model.layer_outputs(torch.from_numpy(x))
    theirs = opencv_outputs(cfg, weights, x, ["conv_11", "conv_18"])  # linear activation: nothing fused after
    for index, map_ in zip((11, 18), theirs, strict=True):
        assert_close(ours[index].numpy(), map_, f"layer {index}")
        assert torch.equal(ours[index], ours[index + 1])


def test_decode_is_darknets_formula():
    """Hand-computed boxes for one cell: sigmoid x, y with scale_x_y, exp w, h times the anchor over the
    input size, class scores times objectness."""
    from headstart.darknet import decode_yolo

    raw = torch.zeros(1, 2 * 6, 2, 3)
    raw[0, 6 + 0, 1, 2] = 1.0  # anchor 1, tx at row 1, column 2
    raw[0, 6 + 2, 1, 2] = 0.5  # tw
    raw[0, 6 + 4, 1, 2] = 2.0  # objectness
    raw[0, 6 + 5, 1, 2] = -1.0  # the one class
    rows = decode_yolo(raw, [(10, 20), (30, 40)], (64, 96), scale_x_y=1.2)
    assert rows.shape == (1, 2 * 3 * 2, 6)
    row = rows[0, (1 * 3 + 2) * 2 + 1]
    sig = torch.sigmoid
    obj = sig(torch.tensor(2.0))
    want = torch.stack([(2 + (sig(torch.tensor(1.0)) - 0.5) * 1.2 + 0.5) / 3, torch.tensor((1 + 0.5) / 2),
                        torch.exp(torch.tensor(0.5)) * 30 / 96, torch.tensor(40 / 64), obj, sig(torch.tensor(-1.0)) * obj])
    assert torch.allclose(row, want, atol=1e-6)
    assert decode_yolo(raw, [(10, 20), (30, 40)], (64, 96), thresh=0.9)[0, :, 5].eq(0).all()


def test_round_trip_is_exact(tmp_path):
    cfg, weights = make_net(tmp_path, "v4", TINY_V4, seed=3)
    model = load_darknet(cfg, weights)
    assert model.header == (0, 2, 5, 12345)
    out_cfg, out_weights = tmp_path / "out" / "again.cfg", tmp_path / "out" / "again.weights"
    save_darknet(model, out_cfg, out_weights)
    assert out_weights.read_bytes() == weights.read_bytes()
    assert read_cfg(out_cfg) == read_cfg(cfg)
    assert "#" not in out_cfg.read_text() and "layers=-1,7\n" in out_cfg.read_text()
    again = load_darknet(out_cfg, out_weights)
    assert again.sections == model.sections and again.header == model.header
    mine, theirs = model.state_dict(), again.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    # What was written reads in OpenCV as the same network.
    x = image(64, 64)
    names = [f"yolo_{i}" for i, _ in model.yolo_layers]
    for a, b in zip(opencv_outputs(cfg, weights, x, names), opencv_outputs(out_cfg, out_weights, x, names), strict=True):
        assert np.array_equal(a, b)


def test_round_trip_of_an_old_header_and_a_new_network(tmp_path):
    cfg = tmp_path / "piece.cfg"
    cfg.write_text(V3_PIECE)
    old = tmp_path / "old.weights"
    random_weights(cfg, old, header=(0, 1, 0, 7))  # before version 0.2, seen takes 4 bytes
    model = load_darknet(cfg, old)
    assert model.header == (0, 1, 0, 7) and weights_bytes(model) == old.read_bytes()
    fresh = load_darknet(cfg)  # no weights: PyTorch's random initialisation, header of version 0.2
    assert not fresh.training and fresh.header == (0, 2, 0, 0)
    save_darknet(fresh, tmp_path / "fresh.cfg", tmp_path / "fresh.weights")
    again = load_darknet(tmp_path / "fresh.cfg", tmp_path / "fresh.weights")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values(), strict=True))
    assert (tmp_path / "fresh.weights").stat().st_size == old.stat().st_size + 4


def test_cfg_text_is_read_as_darknet_reads_it(capsys):
    sections = parse_cfg("[net]\nwidth = 32 \n height=32\n\n; c\n# c\n[route]\nlayers = -1, 61 # why\n"
                         "layers=3\n[conv]\nsize=1\nsize=3\n", "x.cfg")
    assert [s.type for s in sections] == ["net", "route", "conv"] and sections[2].kind == "convolutional"
    assert sections[1].options == {"layers": "-1,61"}  # whitespace and the comment dropped, first value kept
    assert sections[2].options == {"size": "1"} and [s.line for s in sections] == [1, 7, 10]
    err = capsys.readouterr().err
    assert "x.cfg line 9" in err and "keeping the first value (-1,61, line 8)" in err
    assert "line 12" in err


def replace_line(text: str, old: str, new: str, nth: int = 1) -> str:
    """`text` with its nth line equal to `old` (stripped) replaced by `new`."""
    lines, seen = text.splitlines(), 0
    for i, line in enumerate(lines):
        if line.strip() == old:
            seen += 1
            if seen == nth:
                lines[i] = new
                return "\n".join(lines) + "\n"
    raise AssertionError(f"no line {old!r}")


BAD_CFGS = [
    # (change to TINY_V4: old line, new line, nth; fragments the message must hold)
    (("[route]", "[foo]", 1), ["unknown layer type [foo]", "layer 3", "headstart reads convolutional, maxpool"]),
    (("layers = -1,-2", "layers = -1,-9", 1), ["layer 6 [route]", "layers=-1,-9", "-9 points at layer -3",
                                               "layers 0..5"]),
    (("layers = -1, 7", "layers = -1, 17", 1), ["layer 17 [route]", "17 points at layer 17", "0..16"]),
    (("[net]", "[foo_net]", 1), ["line 2: no [net] section before the first layer [foo_net]", "start the file with [net]"]),
    (("filters=24", "filters=25", 1), ["layer 13 [yolo]", "reads a map of 25 channels", "set filters=24"]),
    (("filters=16", "filters=1x6", 1), ["layer 1 [convolutional]", "filters=1x6 is not a whole number"]),
    (("activation=mish", "activation=gelu", 1), ["layer 10 [convolutional]", "activation=gelu", "leaky"]),
    (("group_id=1", "group_id=2", 1), ["layer 3 [route]", "group_id=2 with groups=2"]),
    (("mask = 3,4,5", "mask = 3,4,6", 1), ["layer 13 [yolo]", "anchor 6 does not exist"]),
    (("anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319", "anchors = 10,14, 23", 1),
     ["layer 13 [yolo]", "lists 3 numbers but num=6 needs 12"]),
    (("layers = -6,-1", "layers = -8,-1", 1), ["layer 8 [route]", "joins maps of different sizes"]),
    (("width=64", "", 1), ["[net]", "gives no width="]),
    (("pad=1", "pad=1\ndilation=2", 1), ["layer 0 [convolutional]", "dilation=2 is not supported"]),
    (("scale_x_y = 1.05", "scale_x_y = fast", 1), ["layer 13 [yolo]", "'fast' is not a number"]),
    (("stride=2", "stride=2\nstride_x=1", 1), ["layer 0 [convolutional]", "stride_x=1 differs"]),
    (("activation=leaky", "activation=leaky\nfilters", 1), ["'filters' is not an option", "key=value"]),
]


@pytest.mark.parametrize(("change", "fragments"), BAD_CFGS, ids=[c[0][1].split("\n")[-1] or "no width"
                                                                    for c in BAD_CFGS])
def test_bad_cfg_is_one_line_naming_file_and_line(tmp_path, change, fragments):
    old, new, nth = change
    cfg = tmp_path / "broken.cfg"
    cfg.write_text(replace_line(TINY_V4, old, new, nth))
    with pytest.raises(HeadstartError) as info:
        load_darknet(cfg)
    message = str(info.value)
    assert "\n" not in message and re.match(rf"{re.escape(str(cfg))}:? line \d+", message), message
    for fragment in fragments:
        assert fragment in message, message


def test_shortcut_of_another_shape_and_a_route_to_nothing(tmp_path):
    cfg = tmp_path / "s.cfg"
    cfg.write_text(replace_line(V3_PIECE, "from=-3", "from=-2", 2))
    with pytest.raises(HeadstartError, match=r"s\.cfg line \d+: layer 8 \[shortcut\]: adds layer 6 \(16x16x16\) to a "
                                             r"16x16x32 map"):
        read_cfg(cfg)
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[route]\nlayers=0\n")
    with pytest.raises(HeadstartError, match=r"s\.cfg line 5: layer 0 \[route\]: layers=0: 0 points at layer 0, "
                                             r"which does not come before this one; it can point at nothing"):
        read_cfg(cfg)


def test_truncated_weights_name_the_byte_and_the_layer(tmp_path):
    cfg, weights = make_net(tmp_path, "v3tiny", TINY_V3)
    data = weights.read_bytes()
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[:-100])
    with pytest.raises(HeadstartError) as info:
        load_darknet(cfg, cut)
    message = str(info.value)
    # The last layer (18) is a 21-filter 1x1 convolution on 64 channels: 21 biases, then 21 x 64 weights.
    assert "\n" not in message and message.startswith(f"{cut}: ends at byte {len(data) - 100:,} inside layer 18 "
                                                      "[convolutional] (expected 100 more bytes for its weights"), message
    assert "truncated or belongs to another .cfg" in message
    # Layer 0: 8 biases, scales, means, variances, then 8 x 3 x 3 x 3 weights (992 bytes after the 20 of the
    # header); this file stops 3 bytes into its scales.
    cut.write_bytes(data[:20 + 8 * 4 + 3])
    with pytest.raises(HeadstartError, match=r"ends at byte 55 inside layer 0 \[convolutional\] \(expected 957 more "
                                             r"bytes for its scales, running means, running variances and weights\)"):
        load_darknet(cfg, cut)
    cut.write_bytes(data[:10])
    with pytest.raises(HeadstartError, match="ends at byte 10 inside its header"):
        load_darknet(cfg, cut)


def test_weights_with_bytes_left_over_or_of_another_cfg(tmp_path):
    cfg, weights = make_net(tmp_path, "v3tiny", TINY_V3)
    data = weights.read_bytes()
    extra = tmp_path / "extra.weights"
    extra.write_bytes(data + b"\0" * 8)
    with pytest.raises(HeadstartError) as info:
        load_darknet(cfg, extra)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{extra}: 8 bytes left over after the last convolution "
                                                      f"(layer 18), which ends at byte {len(data):,} of "
                                                      f"{len(data) + 8:,}"), message
    other_cfg, other = make_net(tmp_path, "v4tiny", TINY_V4)
    with pytest.raises(HeadstartError, match=r"v4tiny\.weights: .*belongs to another \.cfg than .*v3tiny\.cfg"):
        load_darknet(cfg, other)
    model = DarknetModel(read_cfg(cfg), str(cfg))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(HeadstartError):
        from headstart.darknet import load_weights

        load_weights(model, extra)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # left as it was


def test_missing_files_and_wrong_input(tmp_path):
    with pytest.raises(HeadstartError, match=r"nothere\.cfg: no such \.cfg file"):
        load_darknet(tmp_path / "nothere.cfg")
    cfg, weights = make_net(tmp_path, "v3tiny", TINY_V3)
    with pytest.raises(HeadstartError, match=r"nothere\.weights: no such \.weights file"):
        load_darknet(cfg, tmp_path / "nothere.weights")
    with pytest.raises(HeadstartError, match=r"v3tiny\.weights: byte \d+ is not text"):
        load_darknet(weights, weights)
    with pytest.raises(HeadstartError, match=r"takes \(N, 3, height, width\) images"):
        load_darknet(cfg)(torch.zeros(1, 1, 64, 64))


def test_upsample_scale_and_channel_groups_of_several_routes():
    """Darknet's upsample scale= multiplies the repeated cells; a route with groups= cuts each of its
    layers (not their concatenation); a size=1 pool with Darknet's default padding (0) changes nothing."""
    model = DarknetModel(parse_cfg("[net]\nwidth=4\nheight=4\nchannels=4\n[upsample]\nstride=2\nscale=0.5\n"
                                   "[maxpool]\nsize=2\nstride=2\n[maxpool]\nsize=1\n[route]\nlayers=-1,-2\n"
                                   "groups=2\ngroup_id=1\n"))
    x = torch.arange(64, dtype=torch.float32).reshape(1, 4, 4, 4)
    up, pooled, same, routed = model.layer_outputs(x)
    assert torch.equal(up, x.repeat_interleave(2, 2).repeat_interleave(2, 3) * 0.5)
    assert torch.equal(pooled, x * 0.5) and torch.equal(same, pooled)
    assert model.plan.shapes[3] == (4, 4, 4) and torch.equal(routed, torch.cat([same[:, 2:], pooled[:, 2:]], 1))
    cfg = "[net]\nwidth=4\nheight=4\nchannels=4\n[maxpool]\nsize=1\n[route]\nlayers=-1,-2\ngroups=2\ngroup_id=1\n"
    with pytest.raises(HeadstartError, match="layer 1 \\[route\\]: layers=-1,-2: -2 points at layer -1"):
        DarknetModel(parse_cfg(cfg, "g.cfg"), "g.cfg")
    cfg = cfg.replace("layers=-1,-2", "layers=-1,0")
    routed = DarknetModel(parse_cfg(cfg)).layer_outputs(x)[1]
    assert torch.equal(routed, torch.cat([x[:, 2:], x[:, 2:]], 1))
