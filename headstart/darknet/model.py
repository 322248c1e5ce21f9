"""A Darknet network (YOLOv3, YOLOv4 and their tiny versions) as a PyTorch module.

DarknetModel builds one module per .cfg layer from the checked plan (headstart.darknet.spec) and keeps
the parsed sections, so that the network can be written back as a .cfg and a .weights file
(headstart.darknet.weights). Each layer computes what Darknet computes: the padding of its max pools,
the channel groups of its routes, its activations (leaky is Darknet's 0.1 slope). A yolo layer passes
its input on unchanged; decode_yolo turns that raw map into boxes the way Darknet and OpenCV do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import HeadstartError
from .spec import Conv, Layer, MaxPool, Net, Plan, Route, Section, Shortcut, Upsample, Yolo, plan_layers

# Darknet divides by sqrt(var) + 1e-6 and OpenCV by sqrt(var + 1e-6): the same to float precision for any
# variance a trained network has, and nn.BatchNorm2d takes the second form.
BN_EPS = 1e-6


class WeightsHeader(NamedTuple):
    """The start of a .weights file: format version (major, minor, revision) and `seen`, the number of
    images trained on. Kept on the model so that writing it back reproduces the file."""

    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def wide_seen(self) -> bool:
        """Whether `seen` takes 8 bytes (version 0.2 and later) rather than 4."""
        return self.major * 10 + self.minor >= 2


def activation(name: str) -> nn.Module:
    """Darknet's activation `name` as a module (names checked by headstart.darknet.spec)."""
    modules: dict[str, type[nn.Module]] = {"linear": nn.Identity, "relu": nn.ReLU, "mish": nn.Mish,
                                           "swish": nn.SiLU, "logistic": nn.Sigmoid, "tanh": nn.Tanh}
    return nn.LeakyReLU(0.1) if name == "leaky" else modules[name]()


class ConvBlock(nn.Module):
    """[convolutional]: convolution, batch norm when batch_normalize=1 (the convolution then has no bias,
    as in Darknet, whose bias is the norm's shift), activation."""

    def __init__(self, spec: Conv) -> None:
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv2d(spec.in_channels, spec.filters, spec.size, spec.stride, spec.padding,
                              groups=spec.groups, bias=not spec.batch_normalize)
        self.bn = nn.BatchNorm2d(spec.filters, eps=BN_EPS) if spec.batch_normalize else None
        self.act = activation(spec.activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class MaxPoolBlock(nn.Module):
    """[maxpool] as Darknet pools: `padding` cells of -inf in all, padding // 2 before (left, top) and the
    rest after, so size=2 stride=1 (yolov3-tiny) pads one cell on the right and bottom and keeps the size."""

    def __init__(self, spec: MaxPool) -> None:
        super().__init__()
        self.spec = spec
        before = spec.padding // 2
        self.pad = (before, spec.padding - before, before, spec.padding - before)

    def forward(self, x: Tensor) -> Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.spec.size, self.spec.stride)


class RouteBlock(nn.Module):
    """[route]: part `group_id` of `groups` equal channel parts of each routed output, concatenated."""

    def __init__(self, spec: Route) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, inputs: list[Tensor]) -> Tensor:
        groups, group_id = self.spec.groups, self.spec.group_id
        if groups > 1:
            inputs = [t.narrow(1, group_id * (t.shape[1] // groups), t.shape[1] // groups) for t in inputs]
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)


class ShortcutBlock(nn.Module):
    """[shortcut]: the previous output plus an earlier one (same shape), then the activation."""

    def __init__(self, spec: Shortcut) -> None:
        super().__init__()
        self.spec = spec
        self.act = activation(spec.activation)

    def forward(self, x: Tensor, other: Tensor) -> Tensor:
        return self.act(x + other)


class UpsampleBlock(nn.Module):
    """[upsample]: each cell repeated `stride` times both ways (nearest neighbour), times `scale`."""

    def __init__(self, spec: Upsample) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=self.spec.stride, mode="nearest")
        return x if self.spec.scale == 1 else x * self.spec.scale


class YoloBlock(nn.Module):
    """[yolo]: passes the raw map of the layer before on unchanged (decoding is decode_yolo's), and holds
    the head's mask, anchors, classes and scale_x_y."""

    def __init__(self, spec: Yolo) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: Tensor) -> Tensor:
        return x


def decode_yolo(raw: Tensor, anchors: Sequence[tuple[float, float]], input_size: tuple[int, int],
                scale_x_y: float = 1.0, thresh: float = 0.0) -> Tensor:
    """Boxes from a yolo layer's raw map, as Darknet's get_yolo_detections and OpenCV's yolo output compute
    them: (N, A*(5+C), H, W) -> (N, H*W*A, 5+C), one row per cell and anchor in the order row, column,
    anchor (OpenCV's order), each row

        x, y  centre, a fraction of the input: (column + (sigmoid(tx) - 0.5) * scale_x_y + 0.5) / W, same for y
        w, h  size, a fraction of the input: exp(tw) * anchor width / input width, same for h
        objectness  sigmoid(to)
        C class scores  objectness * sigmoid(tc), set to 0 where not above `thresh`

    `anchors` are the head's masked (width, height) pairs in input pixels; `input_size` is the network
    input's (height, width). Class scores carry the objectness because both Darknet and OpenCV report
    them so (OpenCV with thresh=0.2 unless the [yolo] section sets thresh=); thresh=0 keeps them all."""
    n, channels, h, w = raw.shape
    a = len(anchors)
    if not a or channels % a or channels // a < 5:
        raise HeadstartError(f"decode_yolo: a map of {channels} channels does not hold {a} anchors x (5 + classes); "
                             "give the raw output of the yolo layer with its own masked anchors")
    p = raw.reshape(n, a, channels // a, h, w).permute(0, 3, 4, 1, 2)  # n, h, w, anchor, 5 + classes
    xy = (torch.sigmoid(p[..., :2]) - 0.5) * scale_x_y + 0.5
    rows = torch.arange(h, device=raw.device, dtype=raw.dtype).view(h, 1, 1)
    cols = torch.arange(w, device=raw.device, dtype=raw.dtype).view(1, w, 1)
    sizes = torch.tensor(anchors, device=raw.device, dtype=raw.dtype)
    x = (xy[..., 0] + cols) / w
    y = (xy[..., 1] + rows) / h
    bw = torch.exp(p[..., 2]) * sizes[:, 0] / input_size[1]
    bh = torch.exp(p[..., 3]) * sizes[:, 1] / input_size[0]
    objectness = torch.sigmoid(p[..., 4])
    scores = torch.sigmoid(p[..., 5:]) * objectness.unsqueeze(-1)
    scores = torch.where(scores > thresh, scores, torch.zeros_like(scores))
    boxes = torch.stack([x, y, bw, bh, objectness], dim=-1)
    return torch.cat([boxes, scores], dim=-1).reshape(n, h * w * a, channels // a)


def run_layer(spec: Layer, layer: nn.Module, x: Tensor, outputs: Sequence[Tensor] | Mapping[int, Tensor]) -> Tensor:
    """One layer's output from the previous one (`x`) and, for a route or shortcut, the earlier outputs it
    reads (`outputs`, by layer number)."""
    if isinstance(spec, Route):
        return layer([outputs[j] for j in spec.layers])
    if isinstance(spec, Shortcut):
        return layer(x, outputs[spec.source])
    return layer(x)


def build_layer(spec: Layer) -> nn.Module:
    """The module computing one checked layer."""
    if isinstance(spec, Conv):
        return ConvBlock(spec)
    if isinstance(spec, MaxPool):
        return MaxPoolBlock(spec)
    if isinstance(spec, Route):
        return RouteBlock(spec)
    if isinstance(spec, Shortcut):
        return ShortcutBlock(spec)
    if isinstance(spec, Upsample):
        return UpsampleBlock(spec)
    return YoloBlock(spec)


class DarknetModel(nn.Module):
    """A Darknet network built from .cfg sections; forward(x) returns the raw map at each yolo layer.

    `sections` are kept (a copy) to write the network back as a .cfg; `header` is the .weights header
    the weights came with (version 0.2 and seen=0 for a network not loaded from a file). The module
    starts with PyTorch's random initialisation; headstart.darknet.load_darknet fills it from a .weights
    file and puts it in eval mode, which Darknet's batch norms (running statistics) need."""

    def __init__(self, sections: list[Section], source: str = "<cfg>") -> None:
        super().__init__()
        self.plan: Plan = plan_layers(sections, source)
        self.sections = [Section(s.type, dict(s.options), s.line) for s in sections]
        self.source = source
        self.header = WeightsHeader()
        self.layers = nn.ModuleList(build_layer(spec) for spec in self.plan.layers)
        # Outputs a later route or shortcut reads; the others are dropped as soon as they are used.
        self.kept = frozenset(i for spec in self.plan.layers for i in
                              (spec.layers if isinstance(spec, Route) else
                               (spec.source,) if isinstance(spec, Shortcut) else ()))

    @property
    def net(self) -> Net:
        return self.plan.net

    @property
    def yolo_layers(self) -> list[tuple[int, Yolo]]:
        """(Darknet layer number, head) for each yolo layer, in the order forward() returns their maps."""
        return [(i, spec) for i, spec in enumerate(self.plan.layers) if isinstance(spec, Yolo)]

    def conv_blocks(self) -> list[tuple[int, ConvBlock]]:
        """(Darknet layer number, block) for each convolution: the layers a .weights file holds, in order."""
        return [(i, m) for i, m in enumerate(self.layers) if isinstance(m, ConvBlock)]

    def forward(self, x: Tensor) -> list[Tensor]:
        """The raw (N, A*(5+C), H, W) map at each yolo layer, in .cfg order; for a .cfg without a yolo
        layer (a backbone), the last layer's output alone."""
        heads, outputs = self._run(x, keep_all=False)
        return heads if heads else [outputs[-1]]

    def layer_outputs(self, x: Tensor) -> list[Tensor]:
        """Every layer's output, in .cfg order (to compare a layer with another Darknet reader's)."""
        return self._run(x, keep_all=True)[1]

    def decode(self, outputs: list[Tensor], input_size: tuple[int, int] | None = None,
               thresh: float = 0.0) -> list[Tensor]:
        """decode_yolo on each yolo map from forward(); `input_size` (height, width) is the input's size,
        the [net] size by default."""
        size = input_size or (self.net.height, self.net.width)
        return [decode_yolo(raw, spec.masked_anchors, size, spec.scale_x_y, thresh)
                for raw, (_, spec) in zip(outputs, self.yolo_layers, strict=True)]

    def _run(self, x: Tensor, keep_all: bool) -> tuple[list[Tensor], list[Tensor]]:
        if x.ndim != 4 or x.shape[1] != self.net.channels:
            raise HeadstartError(f"{self.source}: the network takes (N, {self.net.channels}, height, width) images, "
                                 f"not a tensor of shape {tuple(x.shape)}; give {self.net.channels}-channel NCHW input")
        outputs: list[Tensor] = []
        heads = []
        empty = x.new_empty(0)
        for i, (spec, layer) in enumerate(zip(self.plan.layers, self.layers, strict=True)):
            x = run_layer(spec, layer, x, outputs)
            if isinstance(spec, Yolo):
                heads.append(x)
            outputs.append(x if keep_all or i in self.kept or i == len(self.layers) - 1 else empty)
        return heads, outputs
