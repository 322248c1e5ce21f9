"""COCO metrics for a detector on labelled images (torchmetrics' MeanAveragePrecision on
pycocotools: the reference COCO evaluation, not a re-implementation).

    map            AP averaged over IoU 0.50:0.05:0.95 (COCO's primary metric)
    map_50, map_75 AP at IoU 0.5 / 0.75
    per_class_ap   {class: AP@[.5:.95]}, per_class_ap_50 {class: AP@.5}; None for a class with no boxes
    mask_*         the same for masks (Mask R-CNN runs on data with masks)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .data import DetectionData, mask_of


@torch.no_grad()
def detect(model: nn.Module, data: DetectionData, idx: np.ndarray | list[int], device: torch.device,
           batch_size: int = 1) -> list[dict[str, torch.Tensor]]:
    """The model's detections (eval mode, on the CPU afterwards) for data.images[idx]. One image at a
    time by default: a batch is padded to its largest image, and the padding changes the features
    near the borders, so an image's detections would depend on the images batched with it."""
    from .inputs import load_image

    was = model.training
    model.eval()
    out: list[dict[str, torch.Tensor]] = []
    idx = list(map(int, idx))
    for k in range(0, len(idx), batch_size):
        imgs = [load_image(data.images[i].path).to(device) for i in idx[k: k + batch_size]]
        out += [{key: v.cpu() for key, v in d.items()} for d in model(imgs)]
    model.train(was)
    return out


def coco_metrics(detections: list[dict[str, torch.Tensor]], data: DetectionData, idx: np.ndarray | list[int],
                 masks: bool = False) -> dict[str, Any]:
    """mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP of `detections` against data.images[idx]."""
    from torchmetrics.detection import MeanAveragePrecision

    idx = list(map(int, idx))
    kinds = ["bbox", "segm"] if masks else ["bbox"]
    full = MeanAveragePrecision(box_format="xyxy", iou_type=kinds, class_metrics=True, backend="pycocotools")
    at50 = MeanAveragePrecision(box_format="xyxy", iou_type=kinds, class_metrics=True, iou_thresholds=[0.5],
                                backend="pycocotools")
    preds, truths = [], []
    for d, i in zip(detections, idx):
        image = data.images[i]
        p = {"boxes": d["boxes"].float(), "scores": d["scores"].float(), "labels": d["labels"].long() - 1}
        t = {"boxes": torch.as_tensor(image.boxes, dtype=torch.float32).reshape(-1, 4),
             "labels": torch.as_tensor(image.labels, dtype=torch.int64)}
        if masks:
            p["masks"] = (d["masks"][:, 0] > 0.5) if "masks" in d else torch.zeros((0, image.height, image.width),
                                                                                   dtype=torch.bool)
            t["masks"] = torch.from_numpy(np.stack([mask_of(image, j) for j in range(len(image.boxes))])).bool() \
                if len(image.boxes) else torch.zeros((0, image.height, image.width), dtype=torch.bool)
        preds.append(p)
        truths.append(t)
    full.update(preds, truths)
    at50.update(preds, truths)
    r, r50 = full.compute(), at50.compute()
    out: dict[str, Any] = {"n_images": len(idx), "n_boxes": int(sum(len(t["labels"]) for t in truths))}
    for prefix, key in (("", "bbox"), ("mask_", "segm")):
        if key not in kinds:
            continue
        k = (lambda name: f"{key}_{name}") if len(kinds) > 1 else (lambda name: name)
        out[f"{prefix}map"] = _num(r[k("map")])
        out[f"{prefix}map_50"] = _num(r[k("map_50")])
        out[f"{prefix}map_75"] = _num(r[k("map_75")])
        out[f"{prefix}mar_100"] = _num(r[k("mar_100")])
        out[f"{prefix}per_class_ap"] = _per_class(r, k, data.classes)
        out[f"{prefix}per_class_ap_50"] = _per_class(r50, k, data.classes)
    return out


def _num(v: torch.Tensor) -> float | None:
    x = float(v)
    return None if x < 0 else round(x, 4)  # torchmetrics says -1 when there is nothing to score


def _per_class(r: dict[str, torch.Tensor], k, classes: tuple[str, ...]) -> dict[str, float | None]:
    ids = r["classes"].reshape(-1).tolist()
    values = r[k("map_per_class")].reshape(-1).tolist()
    got = {int(c): (None if v < 0 else round(float(v), 4)) for c, v in zip(ids, values)}
    return {name: got.get(c) for c, name in enumerate(classes)}
