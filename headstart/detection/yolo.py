"""A one-stage YOLO detector (YOLOv3/v4-style anchors, YOLOv5-style assignment) on a StagedBackbone.

Written here on PyTorch and torchvision ops (no code of Darknet or Ultralytics was read or copied):

    images -> GeneralizedRCNNTransform (the R-CNNs' own resize and normalisation)
           -> backbone: the card's body cut at strides 8, 16, 32 (before a last unit that only widens the features
              for the classifier: headstart.detection.model.backbone_from_classifier), and its new FPN (the
              pooled level is unused)
           -> per level a small head: SiLU on the pyramid's map (its 3x3 convolution is the head's), then a 1x1
              conv to A x (4 box + 1 objectness + K classes)
           -> training: losses (box CIoU, objectness BCE, class BCE); eval: decode, threshold, class-aware NMS

Decoding, per level of stride s, anchor (aw, ah) in input pixels and cell (i, j) of the map:
    x = (2 sigmoid(tx) - 0.5 + i) s,   y = (2 sigmoid(ty) - 0.5 + j) s     the centre, within 1.5 cells
    w = (2 sigmoid(tw))^2 aw,          h = (2 sigmoid(th))^2 ah             0 to 4 times the anchor
    score(class k) = sigmoid(objectness) sigmoid(class k)                    labels 1..K (0: background)
Assignment: a box goes to every anchor whose width and height are both within ANCHOR_RATIO (4) times the
box's, of every level, at the box's own cell and the two neighbouring cells nearest its centre (so a
centre may lie up to 1.5 cells away, as the decoding allows). The objectness target of an assigned
(anchor, cell) is the IoU of its predicted box with the box (detached), 0 everywhere else.

Every loss is an average per image, then over the images, never over the batch's boxes or cells: an image's
loss does not depend on which images share its batch (or process), and the padding a batch adds (cells
outside the image) is left out of the objectness average.

Anchors: 3 per level, k-means on the training boxes as the detector sees them (kmeans_anchors; YOLOv3's COCO
anchors scaled to the input size when there are fewer than 18 boxes), saved with the run. Measured on candy
(partial:3, 20 epochs, held-out mAP@.5 / mAP): k-means 0.942 / 0.581, the scaled COCO anchors 0.950 / 0.496.
Anchor-based rather than anchor-free because the Darknet models of the same issue are; anchor-free was not
measured.
Defaults (headstart.detection.train: YOLO_DEFAULTS, default_epochs, _detect_strategy) were measured on candy
scenes the benchmark does not use (benchmarks/bench_yolo.py reports on others). Eval mode runs a copy of the
network with BatchNorm folded, channels_last, traced and frozen by TorchScript on a CPU (inference_copy): about
2.5x the images/s of the modules as they are, on 2 CPU cores.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional as F

Anchors = tuple[tuple[tuple[float, float], ...], ...]  # per level (strides 8, 16, 32), per anchor (width, height)

STRIDES = (8, 16, 32)
ANCHORS_PER_LEVEL = 3
# YOLOv3's COCO anchors (for 416 px inputs), scaled to the detector's input size where DATA has too few boxes
# to cluster (kmeans_anchors)
COCO_ANCHORS_416: Anchors = (((10, 13), (16, 30), (33, 23)), ((30, 61), (62, 45), (59, 119)),
                             ((116, 90), (156, 198), (373, 326)))
# The pyramid's width under a YOLO head (the R-CNNs': 128). Measured on candy (partial:3, 20 epochs, held-out mAP@.5 /
# mAP, 1 thread): 64 channels 0.942 / 0.581 at 22.3 images/s in eval mode, 128 channels 0.958 / 0.596 at 15.4.
FPN_CHANNELS = 64
ANCHOR_RATIO = 4.0  # a box is assigned to anchors no more than this many times wider/taller (or narrower/shorter)
LEVEL_BALANCE = {8: 4.0, 16: 1.0, 32: 0.4}  # objectness weight per stride: the fine levels have many more (mostly
# empty) cells; 1 for another stride
# YOLOv5's gains for 4 classes at 256 px (box 0.05, objectness 1 x (256 / 640)^2, class 0.5 x 4 / 80) times 6: the box
# term weighs most. Measured on candy (AdamW, 24 epochs, held-out mAP@.5 / mAP): 0.950 / 0.587, against 0.683 / 0.282
# with box 0.05, objectness 1, class 0.5 (the class term then drowns the box term in the shared layers).
LOSS_WEIGHTS = {"box": 0.3, "obj": 1.0, "cls": 0.15}
PRIOR = 0.01  # objectness and class probabilities at the start: nearly every cell is background
SCORE_THRESHOLD = 0.01  # detections scoring at most this are dropped before NMS (evaluate ranks what is left)
NMS_IOU = 0.5
PRE_NMS = 1000  # candidates per image kept for NMS: the highest scoring
DETECTIONS_PER_IMAGE = 100


def scaled_default_anchors(min_size: int) -> Anchors:
    """COCO_ANCHORS_416 scaled from 416 px inputs to `min_size`."""
    f = min_size / 416
    return tuple(tuple((round(w * f, 1), round(h * f, 1)) for w, h in level) for level in COCO_ANCHORS_416)


def kmeans_anchors(wh: np.ndarray, min_size: int, n: int = len(STRIDES) * ANCHORS_PER_LEVEL,
                   iterations: int = 100) -> Anchors:
    """Anchors from the training boxes' (width, height) in input pixels, as YOLOv2 and v3 chose theirs:
    k-means with 1 - IoU as the distance (boxes and centres aligned at a corner), started from the boxes at
    evenly spaced quantiles of area (deterministic), sorted by area and dealt to the levels 3 by 3 (smallest
    to stride 8). Fewer than 2n boxes: scaled_default_anchors."""
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(axis=1)]
    if len(wh) < 2 * n:
        return scaled_default_anchors(min_size)
    order = np.argsort(wh.prod(axis=1))
    centres = wh[order[np.linspace(0, len(wh) - 1, n).round().astype(int)]].copy()

    def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        inter = np.minimum(a[:, None, 0], b[None, :, 0]) * np.minimum(a[:, None, 1], b[None, :, 1])
        return inter / (a.prod(axis=1)[:, None] + b.prod(axis=1)[None, :] - inter)

    for _ in range(iterations):
        nearest = iou(wh, centres).argmax(axis=1)
        moved = np.array([np.median(wh[nearest == k], axis=0) if (nearest == k).any() else centres[k]
                          for k in range(n)])
        if np.allclose(moved, centres):
            break
        centres = moved
    centres = centres[np.argsort(centres.prod(axis=1))]
    per = n // len(STRIDES)
    return tuple(tuple((round(float(w), 1), round(float(h), 1)) for w, h in centres[k * per:(k + 1) * per])
                 for k in range(len(STRIDES)))


def anchors_from_lists(value) -> Anchors:
    """Anchors as saved in JSON (lists) back to tuples."""
    return tuple(tuple((float(w), float(h)) for w, h in level) for level in value)


class YoloHead(nn.Module):
    """Per level: SiLU, then a 1x1 conv to A x (5 + K) maps (the pyramid's own 3x3 convolution before it; measured
    on candy, benchmarks/bench_yolo.py's seeds, held-out mAP@.5 / mAP and images/s against Faster R-CNN's: this head
    0.967 / 0.632 at 6.7x, a 3x3 conv + SiLU before the 1x1 0.968 / 0.659 at 5.3x, that 3x3 conv with the pyramid's
    dropped instead 0.960 / 0.631 at 6.1x, a depthwise 3x3 + 1x1 0.962 / 0.643 at 5.3x), the objectness and class biases
    starting at the PRIOR probability (a head that says "background" everywhere starts stable)."""

    def __init__(self, channels: int, num_anchors: int, num_classes: int, levels: int = len(STRIDES)) -> None:
        super().__init__()
        self.num_anchors, self.num_outputs = num_anchors, 5 + num_classes
        self.levels = nn.ModuleList()
        for _ in range(levels):
            out = nn.Conv2d(channels, num_anchors * self.num_outputs, 1)
            assert out.bias is not None
            with torch.no_grad():
                b = out.bias.view(num_anchors, self.num_outputs)
                b.zero_()
                b[:, 4:] = math.log(PRIOR / (1 - PRIOR))
            self.levels.append(nn.Sequential(nn.SiLU(), out))

    def forward(self, maps: list[Tensor]) -> list[Tensor]:
        """(N, C, H, W) per level -> (N, A, H, W, 5 + K) raw outputs per level."""
        return [per_anchor(level(m), self.num_anchors) for m, level in zip(maps, self.levels)]


def per_anchor(p: Tensor, num_anchors: int) -> Tensor:
    """A head's (N, A x (5 + K), H, W) map, each anchor's channels together (Darknet's layout too) -> (N, A, H, W,
    5 + K)."""
    n, c, h, w = p.shape
    return p.view(n, num_anchors, c // num_anchors, h, w).permute(0, 1, 3, 4, 2)


def decode_at(t: Tensor, cells: Tensor, anchors: Tensor, stride: int) -> Tensor:
    """Raw (..., >= 4) outputs at `cells` (..., 2: column, row) with `anchors` (..., 2: width, height) -> boxes
    (..., 4) as x0, y0, x1, y1 in input pixels (the module's notes)."""
    p = t[..., :4].sigmoid()
    xy = (p[..., :2] * 2 - 0.5 + cells) * stride
    wh = (p[..., 2:4] * 2) ** 2 * anchors
    return torch.cat([xy - wh / 2, xy + wh / 2], dim=-1)


def encode(boxes: Tensor, cells: Tensor, anchors: Tensor, stride: int, eps: float = 1e-6) -> Tensor:
    """The raw (tx, ty, tw, th) that decode() turns into `boxes` (x0, y0, x1, y1; input pixels) at `cells`
    (column, row) with `anchors` (width, height): decode's inverse, where the box can be said there (the
    centre within 1.5 cells, the size within 4 times the anchor's)."""
    xy, wh = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
    p_xy = (xy / stride - cells + 0.5) / 2
    p_wh = (wh / anchors).sqrt() / 2
    return torch.logit(torch.cat([p_xy, p_wh], dim=1).clamp(eps, 1 - eps))


def ciou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """1 - CIoU of pred[i] with target[i] (x0, y0, x1, y1): 1 - IoU, plus the squared distance of the centres over
    the squared diagonal of the box enclosing both, plus the aspect-ratio term. torchvision's
    complete_box_iou_loss, but a predicted box of zero width or height (a tiny size rounds to zero next to its
    coordinates) gives a finite gradient instead of NaN: its sides are clamped to eps in the aspect ratio."""
    iou = paired_iou(pred, target)
    lt, rb = torch.min(pred[:, :2], target[:, :2]), torch.max(pred[:, 2:], target[:, 2:])
    diagonal = ((rb - lt) ** 2).sum(dim=1) + eps
    centres = (((pred[:, :2] + pred[:, 2:]) - (target[:, :2] + target[:, 2:])) ** 2).sum(dim=1) / 4
    wp, wt = (pred[:, 2:] - pred[:, :2]).clamp(min=eps), (target[:, 2:] - target[:, :2]).clamp(min=eps)
    v = (4 / math.pi ** 2) * (torch.atan(wt[:, 0] / wt[:, 1]) - torch.atan(wp[:, 0] / wp[:, 1])) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return 1 - iou + centres / diagonal + alpha * v


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of a[i] with b[i] (x0, y0, x1, y1)."""
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = lambda t: (t[:, 2:] - t[:, :2]).clamp(min=0).prod(dim=1)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp(min=1e-9)


def assign(targets: list[dict[str, Tensor]], anchors: Tensor, stride: int, size: tuple[int, int],
           neighbours: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Which (image, anchor, row, column) of a level of `size` (H, W) learns which box: (image, anchor, row,
    column, box (x0, y0, x1, y1), class 0..K-1), one row per assignment. See the module's notes; without
    `neighbours` (a decoding that keeps the centre within its cell, Darknet's) only the box's own cell."""
    dev = anchors.device
    boxes = torch.cat([t["boxes"].to(dev, torch.float32).reshape(-1, 4) for t in targets])
    labels = torch.cat([t["labels"].to(dev).reshape(-1) for t in targets]) - 1
    image = torch.cat([torch.full((len(t["boxes"]),), k, device=dev, dtype=torch.long) for k, t in enumerate(targets)])
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)
    ratio = wh[:, None, :] / anchors[None, :, :]
    ok = torch.max(ratio, 1 / ratio).amax(dim=2) < ANCHOR_RATIO  # (boxes, anchors)
    g, a = ok.nonzero(as_tuple=True)
    centre = (boxes[g, :2] + boxes[g, 2:]) / 2 / stride  # cell units: x, y
    cell = centre.floor()
    frac = centre - cell
    h, w = size
    limit = torch.tensor([w, h], device=dev, dtype=centre.dtype)
    offsets = [(0, 0), (-1, 0), (0, -1), (1, 0), (0, 1)][: 5 if neighbours else 1]
    when = [torch.ones_like(frac[:, 0], dtype=torch.bool),
            (frac[:, 0] < 0.5) & (cell[:, 0] >= 1), (frac[:, 1] < 0.5) & (cell[:, 1] >= 1),
            (frac[:, 0] >= 0.5) & (cell[:, 0] < limit[0] - 1), (frac[:, 1] >= 0.5) & (cell[:, 1] < limit[1] - 1)]
    gs, as_, cells = [], [], []
    for (dx, dy), keep in zip(offsets, when):
        c = cell[keep] + torch.tensor([dx, dy], device=dev, dtype=cell.dtype)
        inside = (c >= 0).all(dim=1) & (c < limit).all(dim=1)
        gs.append(g[keep][inside])
        as_.append(a[keep][inside])
        cells.append(c[inside])
    g, a, c = torch.cat(gs), torch.cat(as_), torch.cat(cells).long()
    return image[g], a, c[:, 1], c[:, 0], boxes[g], labels[g]


class InferenceNet(nn.Module):
    """Eval mode's network: units run one after the other, the outputs of those at `levels` (strides 8, 16, 32)
    through the pyramid and the head: raw outputs per level (YoloHead.forward)."""

    def __init__(self, units: nn.ModuleList, levels: Sequence[int], fpn: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.units, self.levels, self.fpn, self.head = units, list(levels), fpn, head

    def forward(self, x: Tensor) -> list[Tensor]:
        maps: dict[str, Tensor] = OrderedDict()
        for i, unit in enumerate(self.units):
            x = unit(x)
            if i in self.levels:
                maps[str(len(maps))] = x
        return self.head(list(self.fpn(maps).values())[: len(STRIDES)])


def _forget_inference_copy(module: nn.Module, incompatible) -> None:
    """load_state_dict's hook: new weights, so eval mode makes its copy again."""
    module.__dict__.pop("_inference_copy", None)


class YoloDetector(nn.Module):
    """A YOLO detector with torchvision's detection interface: `backbone` (a StagedBackbone: its FPN's first three
    levels, strides 8, 16, 32, are read), `transform` (GeneralizedRCNNTransform), forward(images, targets) ->
    losses in training mode, [{boxes, labels (1..K), scores}] in the images' own pixels in eval mode."""

    anchors: Tensor  # (levels, anchors per level, 2): width, height in input pixels (a buffer, not saved: the spec has it)

    def __init__(self, backbone: nn.Module, num_classes: int, anchors: Anchors, min_size: int, max_size: int,
                 mean: Sequence[float], std: Sequence[float], head: nn.Module | None = None,
                 strides: Sequence[int] = STRIDES) -> None:
        """`head` (default: a YoloHead on the backbone's out_channels) maps the levels to raw outputs (N, A, H, W,
        5 + K); `strides` are the levels' (finest first)."""
        super().__init__()
        from torchvision.models.detection.transform import GeneralizedRCNNTransform

        if len(anchors) != len(strides) or len({len(level) for level in anchors}) != 1:
            raise ValueError(f"YOLO anchors: one list of the same length per stride {tuple(strides)}; got {anchors}")
        self.backbone = backbone
        self.transform = GeneralizedRCNNTransform(min_size, max_size, list(mean), list(std))
        self.num_classes = num_classes
        self.strides = tuple(int(s) for s in strides)
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32), persistent=False)  # (L, A, 2)
        channels: int = backbone.out_channels  # type: ignore[assignment]
        self.head = head if head is not None else YoloHead(channels, len(anchors[0]), num_classes)
        self.score_thresh: float | Tensor = SCORE_THRESHOLD
        self.nms_thresh, self.detections_per_img = NMS_IOU, DETECTIONS_PER_IMAGE
        self.register_load_state_dict_post_hook(_forget_inference_copy)

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        original = [(img.shape[-2], img.shape[-1]) for img in images]  # not int(): traced, they follow the input
        batch, targets = self.transform(images, targets)
        if self.training:
            if targets is None:
                raise ValueError("a YOLO detector in training mode needs targets")
            return self.losses(self.backbone(batch.tensors), batch.image_sizes, targets)
        fast = self.inference_copy(batch.tensors)
        compiled = "compiled" in fast and not torch.jit.is_tracing()  # an export traces the plain copy
        raw = fast["compiled" if compiled else "net"](batch.tensors.contiguous(memory_format=torch.channels_last))
        found = self.decode_detections(raw, batch.image_sizes)
        return self.transform.postprocess(found, batch.image_sizes, original)

    def inference_copy(self, example: Tensor) -> nn.ModuleDict:
        """What eval mode runs: a copy of the network (inference_net()) with the body's BatchNorm folded into its
        convolutions (a Darknet body's by TorchScript's freeze), channels_last, and on a CPU also traced and frozen
        by TorchScript where it can be: measured on candy at 256 px, 2 CPU cores, 2.2x the images/s of the modules
        as they are, and 1.2x more with TorchScript. Made on the first eval-mode call after the weights changed,
        kept outside the module's state. A change is seen in the head's tensors (an optimizer step: the head
        trains in every phase; to() another device or dtype) or through load_state_dict; body weights edited in
        place by hand, with the head untouched, are not. While traced for export: the last eager call's plain
        copy, or the modules as they are."""
        from ..fuse import fold_batchnorm

        key = tuple((t.data_ptr(), t._version, t.dtype) for t in self.head.parameters())
        kept = self.__dict__.get("_inference_copy")
        if kept is not None and kept[0] == key:
            return kept[1]
        parts = nn.ModuleDict({"net": self.inference_net()})
        if torch.jit.is_tracing():
            return parts
        net = copy.deepcopy(parts["net"]).eval()
        if isinstance(net, InferenceNet):  # a StagedBackbone's units run in sequence: their BatchNorm folds here
            folded = cast(nn.Sequential, fold_batchnorm(nn.Sequential(*net.units), example))
            net.units = nn.ModuleList(list(folded))
        net.to(memory_format=torch.channels_last).requires_grad_(False)  # fixed; constants where traced
        copied = nn.ModuleDict({"net": net})
        if example.device.type == "cpu":
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")  # TorchScript's deprecation notice, tracer notes
                    traced = torch.jit.trace(net, example.contiguous(memory_format=torch.channels_last),
                                             check_trace=False)
                    copied["compiled"] = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            except Exception:  # noqa: BLE001 - a network TorchScript cannot trace or freeze runs as the plain copy
                pass
        self.__dict__["_inference_copy"] = (key, copied)
        return copied

    def inference_net(self) -> nn.Module:
        """The network eval mode runs, image batch -> raw outputs per level (inference_copy copies it)."""
        body = cast(Any, self.backbone)  # a StagedBackbone
        return InferenceNet(body.units, body.levels, body.fpn, self.head)

    def levels(self, features: "OrderedDict[str, Tensor] | dict[str, Tensor]") -> list[Tensor]:
        """The pyramid's maps at the detector's strides (an FPN's extra pooled level is not used)."""
        return list(features.values())[: len(self.strides)]

    def boxes_at(self, t: Tensor, cells: Tensor, anchors: Tensor, level: int) -> Tensor:
        """Raw outputs at `cells` of `level` -> boxes (decode_at; Darknet's formula in its subclass)."""
        return decode_at(t, cells, anchors, self.strides[level])

    def assign_level(self, targets: list[dict[str, Tensor]], level: int, size: tuple[int, int]):
        """assign() for `level`, whose map has `size` (H, W)."""
        return assign(targets, self.anchors[level], self.strides[level], size)

    def decode_level(self, raw: Tensor, level: int) -> Tensor:
        """Raw (N, A, H, W, >= 4) outputs of `level` -> boxes (N, A, H, W, 4)."""
        h, w = raw.shape[-3], raw.shape[-2]
        ys, xs = torch.meshgrid(torch.arange(h, device=raw.device, dtype=raw.dtype),
                                torch.arange(w, device=raw.device, dtype=raw.dtype), indexing="ij")
        return self.boxes_at(raw, torch.stack([xs, ys], dim=-1), self.anchors[level].view(-1, 1, 1, 2), level)

    # ---------------------------------------------------------------------------------------------- training
    def losses(self, features: "OrderedDict[str, Tensor] | dict[str, Tensor]", image_sizes: list[tuple[int, int]],
               targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The losses of a batch from its pyramid (padded batch, images of `image_sizes` at its top left) and
        its targets (boxes in the resized images' pixels, labels 1..K): each an average per image, then over
        the images. The prefix cache of headstart.detection.train computes the pyramid itself and calls this."""
        raw = self.head(self.levels(features))
        n, dev = len(targets), raw[0].device
        sizes = torch.tensor(image_sizes, device=dev, dtype=torch.float32)  # (N, 2): height, width
        box_sum, cls_sum = torch.zeros(n, device=dev), torch.zeros(n, device=dev)
        count = torch.zeros(n, device=dev)
        obj = raw[0].new_zeros(())
        for lvl, (p, stride) in enumerate(zip(raw, self.strides)):
            _, na, h, w, _ = p.shape
            b, a, gj, gi, box, cls = self.assign_level(targets, lvl, (h, w))
            tobj = torch.zeros(p.shape[:4], device=dev, dtype=p.dtype)
            if len(b):
                pp = p[b, a, gj, gi]
                cells = torch.stack([gi, gj], dim=1).to(pp.dtype)
                pred = self.boxes_at(pp, cells, self.anchors[lvl][a], lvl)
                box_loss = ciou_loss(pred, box)
                box_sum = box_sum.index_add(0, b, box_loss)
                count = count.index_add(0, b, torch.ones_like(box_loss))
                onehot = F.one_hot(cls, self.num_classes).to(pp.dtype)
                cls_loss = F.binary_cross_entropy_with_logits(pp[:, 5:], onehot, reduction="none").mean(dim=1)
                cls_sum = cls_sum.index_add(0, b, cls_loss)
                tobj[b, a, gj, gi] = paired_iou(pred.detach(), box).clamp(0, 1).to(tobj.dtype)
            over = _inside(sizes, stride, h, w)  # (N, H, W): the cells over each image itself, not its padding
            per_cell = F.binary_cross_entropy_with_logits(p[..., 4], tobj, reduction="none").sum(dim=1)  # over anchors
            per_image = (per_cell * over).sum(dim=(1, 2)) / (over.sum(dim=(1, 2)) * na).clamp(min=1)
            obj = obj + LEVEL_BALANCE.get(stride, 1.0) * per_image.mean()
        has = count > 0
        box_l = (box_sum[has] / count[has]).sum() / n
        cls_l = (cls_sum[has] / count[has]).sum() / n
        return {"loss_box": LOSS_WEIGHTS["box"] * box_l, "loss_obj": LOSS_WEIGHTS["obj"] * obj,
                "loss_cls": LOSS_WEIGHTS["cls"] * cls_l}

    # ---------------------------------------------------------------------------------------------- inference
    def detections(self, features: "OrderedDict[str, Tensor] | dict[str, Tensor]",
                   image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Boxes (in the resized images' pixels, clipped to them), labels 1..K and scores per image from a pyramid."""
        return self.decode_detections(self.head(self.levels(features)), image_sizes)

    def decode_detections(self, raw: list[Tensor], image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Detections from the head's raw outputs: every (anchor, cell, class) scoring above score_thresh, then
        class-aware NMS, the best detections_per_img kept."""
        n = raw[0].shape[0]
        boxes = torch.cat([self.decode_level(p, lvl).reshape(n, -1, 4) for lvl, p in enumerate(raw)], dim=1)
        probs = torch.cat([p[..., 4:].reshape(n, -1, 1 + self.num_classes) for p in raw], dim=1).sigmoid()
        scores = probs[..., :1] * probs[..., 1:]  # (N, M, K)
        out = []
        for k in range(n):
            h, w = image_sizes[k]
            b = torchvision.ops.clip_boxes_to_image(boxes[k], (h, w))
            s = scores[k]
            idx, cls = (s > self.score_thresh).nonzero(as_tuple=True)
            sc, top = s[idx, cls].topk(_at_most(s[idx, cls], PRE_NMS))
            idx, cls = idx[top], cls[top]
            bb = b[idx]
            keep = torchvision.ops.remove_small_boxes(bb, 1e-2)
            bb, sc, cls = bb[keep], sc[keep], cls[keep]
            keep = torchvision.ops.batched_nms(bb, sc, cls, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": bb[keep], "scores": sc[keep], "labels": cls[keep] + 1})
        return out


def _at_most(t: Tensor, k: int):
    """min(k, len(t)) as topk takes it: an int, or while traced for ONNX a tensor computed from t's length (a
    Python int would be frozen into the graph at the length seen while tracing)."""
    if not torch.jit.is_tracing():
        return min(k, int(t.shape[0]))
    n = torch._shape_as_tensor(t)[:1]
    return torch.min(torch.cat([torch.tensor([k], dtype=n.dtype), n]))


def _inside(sizes: Tensor, stride: int, h: int, w: int) -> Tensor:
    """(N, H, W) 1 where a cell of a level of `stride` lies over its image (of sizes[k] = height, width), 0 over
    the padding of the batch."""
    rows = torch.arange(h, device=sizes.device, dtype=sizes.dtype) * stride
    cols = torch.arange(w, device=sizes.device, dtype=sizes.dtype) * stride
    return ((rows[None, :, None] < sizes[:, 0, None, None]) & (cols[None, None, :] < sizes[:, 1, None, None])).to(
        sizes.dtype)
