"""A Darknet network (headstart.darknet) as a YOLO detector for new classes: `--model darknet:CFG[,WEIGHTS[,NAMES]]`.

    DarknetModel (the .cfg's layers, the .weights' values)
      -> for_classes: each [yolo] layer's classes and the convolution before it resized for the new classes; that
         convolution's box and objectness rows kept, and the class rows of a source class with a new class's name
         (names from NAMES, or COCO's 80 for an 80-class network)
      -> DarknetDetector: a YoloDetector whose body is every layer but those convolutions (DarknetBody: depth groups
         split where the stride grows, so the strategies and the frozen-prefix cache work as on a zoo card's body),
         whose head is those convolutions, and whose boxes are decoded as Darknet decodes them:
             x = ((sigmoid(tx) - 0.5) scale_x_y + 0.5 + column) stride,   w = exp(tw) anchor width
         (a centre stays within its cell, so a box is assigned to its own cell only, unless scale_x_y >= 2)
      -> to_darknet: the trained detector back as a DarknetModel, written as .cfg + .weights by headstart.darknet

The network takes RGB in [0, 1] (Darknet's input), resized as the other detectors resize (shorter side to the input
size, sides padded to multiples of 32).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..darknet import DarknetModel, Section, format_cfg, load_darknet, parse_cfg
from ..darknet.model import run_layer
from ..darknet.spec import Conv, Route, Shortcut, Yolo
from ..errors import HeadstartError
from .dataset import class_key, coco_names
from .yolo import PRIOR, YoloDetector, per_anchor

WH_LOGIT_MAX = 8.0  # exp(tw) is clamped at e^8 (about 3000 times the anchor) so that no early step overflows


def parse_darknet_model(model: str) -> tuple[Path, Path | None, Path | None]:
    """`darknet:CFG[,WEIGHTS[,NAMES]]` -> the paths, each checked to exist (one line naming the missing one)."""
    parts = [p.strip() for p in model[len("darknet:"):].split(",")]
    if not parts[0] or len(parts) > 3 or any(not p for p in parts):
        raise HeadstartError(f"--model {model}: give darknet:CFG, darknet:CFG,WEIGHTS or darknet:CFG,WEIGHTS,NAMES "
                             "(paths separated by commas)")
    paths = [Path(p).expanduser() for p in parts]
    for p, what in zip(paths, (".cfg", ".weights", "class names (one per line)")):
        if not p.is_file():
            raise HeadstartError(f"--model {model}: {p} is not a file; give the path of the network's {what}")
    cfg, weights, names = paths + [None] * (3 - len(paths))
    return cfg, weights, names


def read_names(path: Path | None, count: int) -> list[str] | None:
    """The source network's class names: one per line of `path` (a Darknet .names file), or COCO's 80 in Darknet's
    order for an 80-class network without one; None when unknown."""
    if path is None:
        if count != 80:
            return None
        return [n for n in coco_names()[1:] if n != "N/A"]
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise HeadstartError(f"{path}: the class names cannot be read ({e}); give a UTF-8 text file, one name per "
                             "line") from None
    if len(names) != count:
        raise HeadstartError(f"{path} lists {len(names)} class names but the network has {count} classes; give the "
                             ".names file it was trained with")
    return names


def heads_of(model: DarknetModel) -> list[tuple[int, Yolo]]:
    """The (layer of the convolution before it, head) of each [yolo] layer, checked to be a detector headstart can
    retrain: that convolution is linear without batch norm and has one map per anchor and output, nothing but its
    [yolo] layer reads it or the [yolo] layer, every head has the same number of anchors."""
    layers, src = model.plan.layers, model.source
    heads = model.yolo_layers
    if not heads:
        raise HeadstartError(f"{src}: no [yolo] layer, so this is not a YOLO detector; give a detector's .cfg "
                             "(YOLOv3, YOLOv4 or their tiny versions)")
    read: dict[int, int] = {}  # layer -> a later layer that reads its output other than the next
    for i, spec in enumerate(layers):
        for j in (spec.layers if isinstance(spec, Route) else (spec.source,) if isinstance(spec, Shortcut) else ()):
            read[j] = i
    for i, yolo in heads:
        conv = layers[i - 1] if i >= 2 else None  # the convolution, and a layer before it that feeds it
        if not isinstance(conv, Conv) or conv.batch_normalize or conv.activation != "linear" or conv.groups != 1:
            raise HeadstartError(f"{src}: layer {i - 1}, before [yolo] layer {i}, is not a plain linear convolution "
                                 "(no batch_normalize); headstart resizes that layer for the new classes")
        if conv.filters != len(yolo.mask) * (5 + yolo.classes):
            raise HeadstartError(f"{src}: layer {i - 1} has filters={conv.filters}, but [yolo] layer {i} needs "
                                 f"{len(yolo.mask)} x (5 + {yolo.classes}) = {len(yolo.mask) * (5 + yolo.classes)}")
        later = [read[j] for j in (i - 1, i) if j in read]
        follows = layers[i + 1] if i + 1 < len(layers) else None
        if later or (follows is not None and not isinstance(follows, Route)):
            raise HeadstartError(f"{src}: the output of [yolo] layer {i} (or its convolution) feeds layer "
                                 f"{later[0] if later else i + 1}; headstart retrains networks whose [yolo] outputs "
                                 "only leave the network (YOLOv3, YOLOv4 and their tiny versions)")
    if len({len(y.mask) for _, y in heads}) != 1:
        raise HeadstartError(f"{src}: its [yolo] layers have different numbers of anchors (mask=); headstart needs the "
                             "same number in each")
    return [(i - 1, y) for i, y in heads]


def for_classes(source: DarknetModel, classes: tuple[str, ...], names: list[str] | None
                ) -> tuple[DarknetModel, list[str]]:
    """A copy of `source` for `classes`: the same layers and weights, each [yolo] layer's classes= and the
    filters= of the convolution before it for the new count; that convolution's box and objectness rows copied,
    its class rows copied for a source class named like a new one (the others start new, at PRIOR). Returns
    the model (in training mode) and the reused class names."""
    heads = heads_of(source)
    k = len(classes)
    sections = [Section(s.type, dict(s.options), s.line) for s in source.sections]
    for conv, yolo in heads:  # sections[0] is [net]: layer i is section i + 1
        sections[conv + 1].options["filters"] = str(len(yolo.mask) * (5 + k))
        sections[conv + 2].options["classes"] = str(k)
    model = DarknetModel(sections, source.source)
    model.header = source.header
    outputs = {f"layers.{conv}." for conv, _ in heads}
    model.load_state_dict({n: t for n, t in source.state_dict().items() if not n.startswith(tuple(outputs))},
                          strict=False)
    index = {class_key(s): i for i, s in enumerate(names or [])}
    pairs = [(c, index[class_key(n)]) for c, n in enumerate(classes) if class_key(n) in index]
    with torch.no_grad():
        for conv, yolo in heads:
            old, new = source.layers[conv].conv, model.layers[conv].conv
            a, c = len(yolo.mask), yolo.classes
            nn.init.normal_(new.weight, 0, 0.01)
            assert new.bias is not None and old.bias is not None
            b = new.bias.view(a, 5 + k)
            b.zero_()
            b[:, 4:] = math.log(PRIOR / (1 - PRIOR))
            for j in range(a):
                rows = [(j * (5 + k) + r, j * (5 + c) + r) for r in range(5)]
                rows += [(j * (5 + k) + 5 + n, j * (5 + c) + 5 + o) for n, o in pairs]
                for r_new, r_old in rows:
                    new.weight[r_new] = old.weight[r_old]
                    new.bias[r_new] = old.bias[r_old]
    return model.train(), [classes[n] for n, _ in pairs]


class DarknetBody(nn.Module):
    """A Darknet network's layers but the convolutions before its [yolo] layers (placeholders there and at the
    [yolo] layers), with StagedBackbone's interface: units, groups, trunk(), pyramid(), group_params(). The
    levels are the inputs of those convolutions, finest first; `kept` outputs are those a route or shortcut
    reads, carried in trunk()'s dictionary (so a cached prefix resumes)."""

    def __init__(self, model: DarknetModel, heads: list[tuple[int, Yolo]], order: list[int]) -> None:
        super().__init__()
        skip = {i for conv, _ in heads for i in (conv, conv + 1)}
        self.specs = model.plan.layers
        self.units = nn.ModuleList(nn.Identity() if i in skip else m for i, m in enumerate(model.layers))
        self.skip = frozenset(skip)
        self.feeds = [heads[k][0] - 1 for k in order]  # the layer whose output each level is, finest first
        self.levels = list(self.feeds)
        self.kept = frozenset(model.kept) | frozenset(self.feeds)
        net, shapes = model.plan.net, model.plan.shapes
        strides = [max(1, round(net.height / shape[1])) for shape in shapes]
        self.groups: list[list[int]] = []
        deepest = 0
        for i, s in enumerate(strides):  # a new group where the stride first grows past 2: stem, 4, 8, 16, 32 ...
            if self.groups and (s <= max(deepest, 2)):
                self.groups[-1].append(i)
            else:
                self.groups.append([i])
            deepest = max(deepest, s)
        self.out_channels = 0  # no pyramid of one width: the head takes each level's own channels

    def trunk(self, x: Tensor, start: int = 0, stop: int | None = None,
              collected: dict[int, Tensor] | None = None) -> tuple[Tensor, dict[int, Tensor]]:
        """Run layers[start:stop]; return the last output and the outputs later layers (or the levels) read."""
        collected = dict(collected or {})
        stop = len(self.units) if stop is None else stop
        for i in range(start, stop):
            if i in self.skip:
                continue
            x = run_layer(self.specs[i], self.units[i], x, collected)
            if i in self.kept:
                collected[i] = x
        return x, collected

    def pyramid(self, collected: dict[int, Tensor]) -> "OrderedDict[str, Tensor]":
        return OrderedDict((str(k), collected[i]) for k, i in enumerate(self.feeds))

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return self.pyramid(self.trunk(x)[1])

    def group_params(self) -> list[list[str]]:
        return [[f"units.{i}.{n}" for i in g for n, _ in self.units[i].named_parameters()] for g in self.groups]


class DarknetHead(nn.Module):
    """The convolutions before the [yolo] layers, finest level first: level maps -> (N, A, H, W, 5 + K)."""

    def __init__(self, convs: list[nn.Module], num_anchors: int, num_classes: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList(convs)
        self.num_anchors, self.num_outputs = num_anchors, 5 + num_classes

    def forward(self, maps: list[Tensor]) -> list[Tensor]:
        return [per_anchor(conv(m), self.num_anchors) for m, conv in zip(maps, self.levels)]


class _Plain(nn.Module):
    """Eval mode's network for a Darknet body: image batch -> raw outputs per level."""

    def __init__(self, body: DarknetBody, head: DarknetHead) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.head(list(self.body(x).values()))


class DarknetDetector(YoloDetector):
    """A YoloDetector on a Darknet network (the module's notes): `sections` (the .cfg for its classes) and the
    .weights header are kept for to_darknet."""

    def __init__(self, model: DarknetModel, min_size: int, max_size: int) -> None:
        heads = heads_of(model)
        net, shapes = model.plan.net, model.plan.shapes
        strides = [max(1, round(net.height / shapes[conv][1])) for conv, _ in heads]
        order = sorted(range(len(heads)), key=lambda k: strides[k])
        body = DarknetBody(model, heads, order)
        head = DarknetHead([model.layers[heads[k][0]] for k in order], len(heads[0][1].mask), heads[0][1].classes)
        anchors = tuple(heads[k][1].masked_anchors for k in order)
        super().__init__(body, heads[0][1].classes, anchors, min_size, max_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                         head=head, strides=[strides[k] for k in order])
        self.scale_x_y = [heads[k][1].scale_x_y for k in order]
        self.output_layers = [heads[k][0] for k in order]
        self.sections = [Section(s.type, dict(s.options), s.line) for s in model.sections]
        self.source, self.header = model.source, model.header

    def inference_net(self) -> nn.Module:
        return _Plain(self.backbone, self.head)  # type: ignore[arg-type]

    def boxes_at(self, t: Tensor, cells: Tensor, anchors: Tensor, level: int) -> Tensor:
        s, stride = self.scale_x_y[level], self.strides[level]
        xy = ((t[..., :2].sigmoid() - 0.5) * s + 0.5 + cells) * stride
        wh = t[..., 2:4].clamp(max=WH_LOGIT_MAX).exp() * anchors
        return torch.cat([xy - wh / 2, xy + wh / 2], dim=-1)

    def assign_level(self, targets: list[dict[str, Tensor]], level: int, size: tuple[int, int]):
        from .yolo import assign

        return assign(targets, self.anchors[level], self.strides[level], size, neighbours=self.scale_x_y[level] >= 2)


def darknet_detector(cfg_text: str, source: str, min_size: int, max_size: int) -> DarknetDetector:
    """A run's detector rebuilt from the .cfg text it saved (random weights; the run's are loaded after)."""
    return DarknetDetector(DarknetModel(parse_cfg(cfg_text, source), source), min_size, max_size)


def start_from_darknet(model: str, classes: tuple[str, ...], min_size: int, max_size: int
                       ) -> tuple[DarknetDetector, str, dict[str, Any]]:
    """`--model darknet:CFG[,WEIGHTS[,NAMES]]` -> the detector for `classes`, its .cfg text, and what it started
    from (files, source classes, the rows reused)."""
    cfg, weights, names_file = parse_darknet_model(model)
    source = load_darknet(cfg, weights)
    heads = heads_of(source)
    names = read_names(names_file, heads[0][1].classes)
    new, reused = for_classes(source, classes, names)
    start = {"darknet_cfg": str(cfg), "weights": str(weights) if weights else None,
             "source_classes": heads[0][1].classes, "source_classes_known": names is not None,
             "reused_classes": reused}
    return DarknetDetector(new, min_size, max_size), format_cfg(new.sections), start


def to_darknet(detector: DarknetDetector) -> DarknetModel:
    """The trained detector as a DarknetModel (its .cfg sections, header and weights), for save_darknet."""
    model = DarknetModel(detector.sections, detector.source)
    model.header = detector.header
    body: DarknetBody = detector.backbone  # type: ignore[assignment]
    with torch.no_grad():
        for i, unit in enumerate(body.units):
            if i not in body.skip:
                model.layers[i].load_state_dict(unit.state_dict())
        for layer, conv in zip(detector.output_layers, detector.head.levels):  # type: ignore[union-attr]
            model.layers[layer].load_state_dict(conv.state_dict())
    return model.eval()


def darknet_files(detector: DarknetDetector, classes: tuple[str, ...], check_width: int = 320
                  ) -> tuple[dict[str, bytes], float]:
    """The run's network (`detector`: on the CPU, float32, eval mode) as Darknet files: {".cfg", ".weights",
    ".names"} -> bytes, and the largest difference between the raw [yolo] maps of those files read back
    (headstart.darknet, as Darknet reads them) and the detector's own, on random pixels. [net] width and height
    become the run's input size (Darknet resizes every image to that square; headstart keeps the aspect ratio,
    so under Darknet an image of another shape is stretched)."""
    import tempfile

    from ..darknet import load_darknet, weights_bytes

    model = to_darknet(detector)
    side = int(math.ceil(detector.transform.min_size[0] / 32) * 32)
    net = model.sections[0].options
    net["width"], net["height"] = str(side), str(side)
    files = {".cfg": format_cfg(model.sections).encode(), ".weights": weights_bytes(model),
             ".names": "".join(f"{c}\n" for c in classes).encode()}
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, side, check_width, generator=gen)
    with tempfile.TemporaryDirectory() as tmp:
        for ext, data in files.items():
            (Path(tmp) / f"net{ext}").write_bytes(data)
        back = load_darknet(Path(tmp) / "net.cfg", Path(tmp) / "net.weights")
    with torch.no_grad():
        theirs = back(x)
        ours = detector.head(detector.levels(detector.backbone(x)))
    diff = 0.0
    for level, layer in enumerate(detector.output_layers):
        k = [i for i, _ in back.yolo_layers].index(layer + 1)
        mine = ours[level].permute(0, 1, 4, 2, 3).reshape(theirs[k].shape)
        diff = max(diff, float((mine - theirs[k]).abs().max()))
    return files, diff
