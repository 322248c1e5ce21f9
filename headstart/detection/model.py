"""Detectors: torchvision Faster R-CNN / Mask R-CNN on a staged backbone.

Two starting points:
  an ImageNet card from the zoo (mobilenet_v2, efficientnet_lite*, any timm / torchvision
      classifier, a run of `headstart pretrain`): its body is cut into units, the units'
      outputs at strides 8, 16 and 32 feed a new feature pyramid (FPN), and new RPN, box (and
      mask) heads sit on it;
  a torchvision detector checkpoint (fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn, the
      mobilenet_v3 FPN ones, the v2 ones): its backbone, FPN, RPN and heads are kept; only the
      last box (and mask) predictor layers are replaced for the new classes, and their rows
      for source classes with the same name as a new class are copied.

Either way the backbone becomes a StagedBackbone: a list of units run one after the other,
grouped into depth groups by stride (stem, stride 4, 8, 16, 32), so `partial:N` counts
backbone groups as it counts depth groups for classification, and a frozen prefix of units
can be run once per image and its output cached (headstart.detection.train).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import HeadstartError
from .dataset import class_key, coco_names
from .yolo import Anchors, YoloDetector, anchors_from_lists

DETECTOR_ARCHS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
                  "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
LEVEL_STRIDES = (8, 16, 32)
FPN_CHANNELS = 128  # half of torchvision's 256: the new pyramid is trained from scratch on small data, on CPUs
ANCHOR_SIZES = ((32, 45), (64, 90), (128, 181), (256, 362))  # per pyramid level: stride 8, 16, 32, 64
ASPECT_RATIOS = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class DetectorSpec:
    """Everything needed to rebuild a detector's network (saved with the run)."""

    base: str                      # "card": an ImageNet card's body + new heads; "torchvision": a detector checkpoint;
                                   # "darknet": a Darknet network (headstart.detection.darknet_yolo)
    arch: str                      # the card's architecture, or the torchvision detector builder's name
    kind: str                      # "faster" | "mask" | "yolo"
    classes: tuple[str, ...]       # the new classes (background excluded)
    min_size: int = 320
    max_size: int = 533
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    fpn_channels: int = FPN_CHANNELS
    rpn: dict[str, int] = field(default_factory=lambda: {"pre_nms_top_n_train": 1000, "post_nms_top_n_train": 500,
                                                        "pre_nms_top_n_test": 500, "post_nms_top_n_test": 300})
    box_batch_size_per_image: int = 256
    anchors: Anchors | None = None  # YOLO: (width, height) in input pixels per level (finest first), per anchor
    darknet_cfg: str | None = None  # base "darknet": the .cfg text of the network for the new classes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DetectorSpec":
        d = dict(d)
        for k in ("classes", "mean", "std"):
            d[k] = tuple(d[k])
        if d.get("anchors") is not None:
            d["anchors"] = anchors_from_lists(d["anchors"])
        return cls(**d)


class StagedBackbone(nn.Module):
    """A body as units run in sequence; the outputs of the `levels` units go through the FPN.
    `trunk` can start and stop at any unit, so a frozen prefix runs once and is cached."""

    def __init__(self, units: list[tuple[str, nn.Module]], levels: list[int], groups: list[list[int]],
                 fpn: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.units = nn.ModuleList([m for _, m in units])
        self.unit_names = [n for n, _ in units]
        self.levels = list(levels)
        self.level_of = [levels.index(i) if i in levels else -1 for i in range(len(units))]  # each unit's level
        self.groups = [list(g) for g in groups]  # unit indices of each depth group, input first
        self.fpn = fpn
        self.out_channels = out_channels

    def trunk(self, x: Tensor, start: int = 0, stop: int | None = None,
              collected: dict[int, Tensor] | None = None) -> tuple[Tensor, dict[int, Tensor]]:
        """Run units[start:stop]; return the last output and the level outputs seen so far."""
        collected = dict(collected or {})
        stop = len(self.units) if stop is None else stop
        for i in range(start, stop):
            x = self.units[i](x)
            if i in self.levels:
                collected[i] = x
        return x, collected

    def pyramid(self, collected: dict[int, Tensor]) -> "OrderedDict[str, Tensor]":
        return self.fpn(OrderedDict((str(k), collected[i]) for k, i in enumerate(self.levels)))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """trunk() then pyramid(), written so that torch.jit.script compiles it (TorchScript export):
        a loop over the units themselves, the levels' names looked up in a list of ints."""
        collected: dict[str, Tensor] = {}
        for i, unit in enumerate(self.units):
            x = unit(x)
            if self.level_of[i] >= 0:
                collected[str(self.level_of[i])] = x
        return self.fpn(collected)

    def group_params(self) -> list[list[str]]:
        """Parameter names (relative to this module) of each depth group."""
        out = []
        for g in self.groups:
            names = []
            for i in g:
                names += [f"units.{i}.{n}" for n, _ in self.units[i].named_parameters()]
            out.append(names)
        return out


DETECTOR_NAMES = {"faster": "Faster R-CNN", "mask": "Mask R-CNN", "yolo": "YOLO"}


def detector_name(kind: str) -> str:
    """The detector of `kind` in words (log lines, reports, export metadata)."""
    return DETECTOR_NAMES[kind]


def origin(start: dict[str, Any]) -> str:
    """What a run's detector started from, in a few words: the card, the checkpoint, or the Darknet files."""
    if start.get("darknet_cfg"):
        weights = start.get("weights")
        return f"{Path(start['darknet_cfg']).name} + " + (Path(weights).name if weights else "random weights")
    return str(start.get("card") or start.get("checkpoint"))


def _units_of_classifier(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The body of a classification network as a sequence of units, input first."""
    info = getattr(net, "feature_info", None)
    if info is not None:  # timm: the units up to the last module feature_info names
        last = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
        top, _, sub = last.partition(".")
        units = []
        for name, child in net.named_children():
            if name == top and sub:
                for n, c in child.named_children():
                    units.append((f"{name}.{n}", c))
                    if n == sub:
                        break
                break
            units.append((name, child))
            if name == top:
                break
        return units
    features = getattr(net, "features", None)
    if isinstance(features, nn.Sequential):  # torchvision mobilenet, efficientnet, convnext, vgg
        return [(f"features.{n}", c) for n, c in features.named_children()]
    units = []  # resnet-like: the children before global pooling
    for name, child in net.named_children():
        if name in ("avgpool", "global_pool", "fc", "classifier", "head") or isinstance(
                child, (nn.AdaptiveAvgPool2d, nn.Linear, nn.Flatten)):
            break
        units.append((name, child))
    return units


def _probe(units: list[nn.Module], what: str) -> tuple[list[int], list[int]]:
    """Stride and channels of every unit's output, from one small forward pass."""
    size = 256
    x = torch.zeros(1, 3, size, size)
    strides, channels = [], []
    try:
        with torch.no_grad():
            for m in units:
                was = m.training
                m.eval()
                x = m(x)
                m.train(was)
                if not isinstance(x, Tensor) or x.ndim != 4:
                    raise TypeError(f"a unit returned {type(x).__name__} of {getattr(x, 'ndim', '?')} dimensions")
                strides.append(2 ** round(math.log2(size / x.shape[-1])))
                channels.append(int(x.shape[1]))
    except Exception as e:  # noqa: BLE001 - any failure means: not a sequence of convolutional stages
        raise HeadstartError(f"{what} cannot serve as a detection backbone (its body is not a sequence of "
                             f"convolutional stages: {str(e).splitlines()[0][:120]}); choose a convolutional model such "
                             "as efficientnet_lite0 or mobilenet_v2") from None
    return strides, channels


def _groups_by_stride(strides: list[int]) -> list[list[int]]:
    groups: list[list[int]] = []
    for i, s in enumerate(strides):
        if groups and (strides[groups[-1][-1]] == s or s <= 2):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def backbone_from_classifier(net: nn.Module, what: str, fpn_channels: int = FPN_CHANNELS,
                             trim_expansion: bool = False) -> StagedBackbone:
    """An ImageNet classifier's body, cut at strides 8, 16 and 32, with a new FPN on top. `trim_expansion`
    (YOLO): where the body ends in a unit that only widens the last stage's output for the classifier (more
    than twice the channels of the stride-32 unit before it: mobilenet_v2's and EfficientNet's 1x1 to 1280),
    the stride-32 level is the unit before it. Measured for YOLO on candy (mobilenet_v2, 2 cores): the
    network runs 11% faster and held-out mAP@.5 is unchanged (benchmarks/bench_yolo.py)."""
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    units = _units_of_classifier(net)
    strides, channels = _probe([m for _, m in units], what)
    if (trim_expansion and len(units) > 2 and strides[-1] == strides[-2] == LEVEL_STRIDES[-1]
            and channels[-1] > 2 * channels[-2]):
        units, strides, channels = units[:-1], strides[:-1], channels[:-1]
    levels = [max(i for i, s in enumerate(strides) if s == want) for want in LEVEL_STRIDES if want in strides]
    if len(levels) != len(LEVEL_STRIDES):
        raise HeadstartError(f"{what} cannot serve as a detection backbone: its body has feature maps at strides "
                             f"{sorted(set(strides))}, and the detector needs 8, 16 and 32")
    units = units[: levels[-1] + 1]
    fpn = FeaturePyramidNetwork([channels[i] for i in levels], fpn_channels, extra_blocks=LastLevelMaxPool())
    return StagedBackbone(units, levels, _groups_by_stride(strides[: len(units)]), fpn, fpn_channels)


def backbone_from_torchvision(backbone: nn.Module, what: str) -> StagedBackbone:
    """torchvision's BackboneWithFPN (an IntermediateLayerGetter + FPN) as a StagedBackbone."""
    body = backbone.body
    units = list(body.items())
    returned = list(body.return_layers)
    levels = [i for i, (n, _) in enumerate(units) if n in returned]
    units = units[: levels[-1] + 1]
    strides, _ = _probe([m for _, m in units], what)
    return StagedBackbone(units, levels, _groups_by_stride(strides), backbone.fpn, backbone.out_channels)


def _detector(backbone: StagedBackbone, spec: DetectorSpec) -> nn.Module:
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    if spec.kind == "yolo":
        assert spec.anchors is not None
        return YoloDetector(backbone, len(spec.classes), spec.anchors, spec.min_size, spec.max_size, spec.mean,
                            spec.std)
    anchors = AnchorGenerator(ANCHOR_SIZES, (ASPECT_RATIOS,) * len(ANCHOR_SIZES))
    names = [str(k) for k in range(len(backbone.levels))]
    kw = dict(min_size=spec.min_size, max_size=spec.max_size, image_mean=list(spec.mean), image_std=list(spec.std),
              rpn_anchor_generator=anchors, box_roi_pool=MultiScaleRoIAlign(names, 7, 2),
              rpn_pre_nms_top_n_train=spec.rpn["pre_nms_top_n_train"],
              rpn_post_nms_top_n_train=spec.rpn["post_nms_top_n_train"],
              rpn_pre_nms_top_n_test=spec.rpn["pre_nms_top_n_test"],
              rpn_post_nms_top_n_test=spec.rpn["post_nms_top_n_test"],
              box_batch_size_per_image=spec.box_batch_size_per_image)
    n = len(spec.classes) + 1
    if spec.kind == "mask":
        return MaskRCNN(backbone, n, mask_roi_pool=MultiScaleRoIAlign(names, 14, 2), **kw)
    return FasterRCNN(backbone, n, **kw)


def build_detector(spec: DetectorSpec, card=None, pretrained: bool = True) -> nn.Module:
    """The network for `spec`: pretrained body weights from the card (when `pretrained`), or a
    random one of the same shape (a saved run's weights are loaded into it afterwards)."""
    if spec.base == "darknet":
        from .darknet_yolo import darknet_detector

        assert spec.darknet_cfg is not None
        return darknet_detector(spec.darknet_cfg, spec.arch, spec.min_size, spec.max_size)
    if spec.base == "card":
        from ..zoo.build import build_architecture, load_network

        net = load_network(card) if pretrained else build_architecture(spec.arch, num_classes=1000)
        return _detector(backbone_from_classifier(net, f"model '{card.name if card else spec.arch}'",
                                                  spec.fpn_channels, trim_expansion=spec.kind == "yolo"), spec)
    return torchvision_detector(spec)


def torchvision_detector(spec: DetectorSpec, num_classes: int | None = None) -> nn.Module:
    """torchvision's detector `spec.arch` (random weights, BatchNorm layers whose affine parameters can
    train), with a StagedBackbone, `num_classes` outputs (default: the spec's classes + background)."""
    import torchvision

    n = num_classes or len(spec.classes) + 1
    kw: dict[str, Any] = dict(weights=None, weights_backbone=None, num_classes=n, min_size=spec.min_size,
                              max_size=spec.max_size, image_mean=list(spec.mean), image_std=list(spec.std),
                              rpn_pre_nms_top_n_train=spec.rpn["pre_nms_top_n_train"],
                              rpn_post_nms_top_n_train=spec.rpn["post_nms_top_n_train"],
                              rpn_pre_nms_top_n_test=spec.rpn["pre_nms_top_n_test"],
                              rpn_post_nms_top_n_test=spec.rpn["post_nms_top_n_test"],
                              box_batch_size_per_image=spec.box_batch_size_per_image)
    model = torchvision.models.get_model(spec.arch, **kw)
    model.backbone = backbone_from_torchvision(model.backbone, f"detector '{spec.arch}'")
    return model


# ------------------------------------------------------------------------------------------ checkpoints
def _meta_state(arch: str, num_classes: int) -> dict[str, torch.Size]:
    import torchvision

    with torch.device("meta"):
        m = torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=num_classes)
    return {k: v.shape for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}


def _differences(expected: dict[str, torch.Size], sd: dict[str, Tensor]) -> list[str]:
    got = {k: v.shape for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    out = [f"{k}: {tuple(got[k])} in the file, {tuple(s)} in the architecture"
           for k, s in expected.items() if k in got and tuple(got[k]) != tuple(s)]
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing:
        out.append(f"{len(missing)} tensors missing from the file (first: {missing[0]})")
    if extra:
        out.append(f"{len(extra)} tensors the architecture does not have (first: {extra[0]})")
    return out


def read_detector_checkpoint(path: Path) -> tuple[dict[str, Tensor], list[str] | None]:
    """A torchvision detector's state_dict from a .pth/.pt (read with weights_only=True: never code)
    or .safetensors file, and its source class names when the file says them (safetensors metadata
    "classes", or a `classes` list saved beside the weights in a dict), else None."""
    from ..zoo.weights import read_state_dict

    names = None
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "classes" in meta:
            names = json.loads(meta["classes"])
        sd = read_state_dict(path)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a file torch cannot read as data
            raise HeadstartError(f"checkpoint '{path}' cannot be read as weights ({str(e).splitlines()[0][:150]}); "
                                 "give a torchvision detector state_dict (.pth) or a .safetensors file") from None
        if isinstance(obj, dict) and isinstance(obj.get("classes"), list):
            names = [str(c) for c in obj["classes"]]
        for key in ("model", "state_dict"):  # torchvision's reference scripts save {"model": ..., "optimizer": ...}
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
        if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
            raise HeadstartError(f"checkpoint '{path}' holds no state_dict of tensors; save model.state_dict()")
        sd = obj
    return sd, names


def checkpoint_arch(path: Path, sd: dict[str, Tensor], arch: str | None) -> tuple[str, int]:
    """Which torchvision detector the checkpoint is (checked against `arch` when given), and its
    number of outputs (background included)."""
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in sd or not any(k.startswith("backbone.") for k in sd):
        raise HeadstartError(f"checkpoint '{path}' is not a torchvision Faster/Mask R-CNN state_dict (no {key}); "
                             "for an ImageNet body give a zoo model (e.g. --model mobilenet_v2)")
    n = int(sd[key].shape[0])
    if arch:
        if arch not in DETECTOR_ARCHS:
            raise HeadstartError(f"--arch '{arch}' is not a supported detector; choose one of {', '.join(DETECTOR_ARCHS)}")
        diff = _differences(_meta_state(arch, n), sd)
        if diff:
            raise HeadstartError(f"checkpoint '{path}' does not fit --arch {arch}: {'; '.join(diff[:2])}")
        return arch, n
    best: tuple[int, str, list[str]] | None = None
    for candidate in DETECTOR_ARCHS:
        diff = _differences(_meta_state(candidate, n), sd)
        if not diff:
            return candidate, n
        if best is None or len(diff) < best[0]:
            best = (len(diff), candidate, diff)
    assert best is not None
    raise HeadstartError(f"checkpoint '{path}' matches no torchvision detector ({', '.join(DETECTOR_ARCHS)}); closest "
                         f"is {best[1]}: {'; '.join(best[2][:2])}")


def transfer_predictor(model: nn.Module, sd: dict[str, Tensor], source: list[str] | None,
                       classes: tuple[str, ...]) -> list[str]:
    """Copy the background row and the rows of source classes named like a new class from the
    checkpoint's predictors into the model's new ones; return the reused class names."""
    reused: list[str] = []
    if not source:
        return reused
    index = {class_key(s): i for i, s in enumerate(source) if s and s != "N/A"}
    pairs = [(0, 0)] + [(c + 1, index[class_key(name)]) for c, name in enumerate(classes) if class_key(name) in index]
    reused = [classes[new - 1] for new, _ in pairs[1:]]
    box = model.roi_heads.box_predictor
    with torch.no_grad():
        for new, old in pairs:
            box.cls_score.weight[new] = sd["roi_heads.box_predictor.cls_score.weight"][old]
            box.cls_score.bias[new] = sd["roi_heads.box_predictor.cls_score.bias"][old]
            box.bbox_pred.weight[4 * new: 4 * new + 4] = sd["roi_heads.box_predictor.bbox_pred.weight"][4 * old: 4 * old + 4]
            box.bbox_pred.bias[4 * new: 4 * new + 4] = sd["roi_heads.box_predictor.bbox_pred.bias"][4 * old: 4 * old + 4]
            mask = getattr(model.roi_heads, "mask_predictor", None)
            key = "roi_heads.mask_predictor.mask_fcn_logits.weight"
            if mask is not None and key in sd:
                mask.mask_fcn_logits.weight[new] = sd[key][old]
                mask.mask_fcn_logits.bias[new] = sd["roi_heads.mask_predictor.mask_fcn_logits.bias"][old]
    return reused


def detector_from_checkpoint(path: Path, spec: DetectorSpec, arch: str | None, source_classes: list[str] | None,
                             log=print) -> tuple[nn.Module, DetectorSpec, dict[str, Any]]:
    """The checkpoint's detector with new predictors for `spec.classes`; what was reused."""
    sd, names = read_detector_checkpoint(path)
    arch, n = checkpoint_arch(path, sd, arch)
    names = source_classes or names
    if names is None and n == 91:
        names = coco_names()  # a 91-output torchvision detector: COCO's categories, in torchvision's order
    if names is not None and len(names) != n:
        raise HeadstartError(f"checkpoint '{path}' has {n} outputs (background included) but its class list has "
                             f"{len(names)} names; give a list of {n} names, background first")
    kind = "mask" if arch.startswith("maskrcnn") else "faster"
    if kind == "mask" and spec.kind == "faster":
        log("the checkpoint is a Mask R-CNN; DATA has no masks, so only its box parts are used")
        arch = arch.replace("maskrcnn", "fasterrcnn")
    spec = DetectorSpec(**{**spec.to_dict(), "classes": spec.classes, "base": "torchvision", "arch": arch,
                           "kind": "mask" if arch.startswith("maskrcnn") else "faster",
                           "fpn_channels": 256})
    source = torchvision_detector(spec, num_classes=n)
    own = {k: v for k, v in sd.items() if k in source.state_dict()} if kind == "mask" and spec.kind == "faster" else sd
    _load_torchvision(source, own)
    model = torchvision_detector(spec)
    skip = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")
    model.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith(skip)}, strict=False)
    reused = transfer_predictor(model, sd, names, spec.classes)
    return model, spec, {"checkpoint": str(path), "architecture": arch, "source_outputs": n,
                         "source_classes_known": names is not None, "reused_classes": reused}


def _load_torchvision(model: nn.Module, sd: dict[str, Tensor]) -> None:
    """Load a torchvision-named state_dict into a model whose backbone is a StagedBackbone."""
    staged: StagedBackbone = model.backbone
    rename = {f"backbone.body.{n}.": f"backbone.units.{i}." for i, n in enumerate(staged.unit_names)}
    out = {}
    for k, v in sd.items():
        for old, new in rename.items():
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    missing, unexpected = model.load_state_dict(out, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in unexpected if not k.startswith("backbone.body.")]  # units past the last level
    if missing or unexpected:
        raise RuntimeError(f"checkpoint left {missing[:2]} unset and {unexpected[:2]} unused")
