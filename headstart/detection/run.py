"""A detection run folder, and what can be done with it: evaluate, predict (PNG + JSON).

  RUN_DIR/model.safetensors   the whole detector's tensors
  RUN_DIR/headstart.json      task "detect", the DetectorSpec (how to rebuild the network),
                              the card or checkpoint it started from, classes, training config
  RUN_DIR/metrics.json        what training measured (validation mAP per evaluation, phases)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import HeadstartError, plural
from ..fileio import atomic_write_bytes, atomic_write_json, check_writable, release_lock
from ..rundir import WEIGHTS_FILE, read_run_metrics, read_run_weights, torch_weights, write_run_files
from ..runtime import pick_device
from .model import DetectorSpec, build_detector

SCORE_THRESHOLD = 0.5  # predict keeps detections at least this confident (evaluate scores all of them)


@dataclass
class DetectionRun:
    """A trained detector and its record; what fit --task detect returns and headstart.load reads."""

    dir: Path
    spec: DetectorSpec
    model: nn.Module
    info: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    modality = "detection"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def save_in_place(self) -> None:
        """Each file atomic, headstart.json last (a run is finished once it says so)."""
        write_run_files(self.dir, torch_weights(self.model), self.metrics, self.info)
        release_lock(self.dir)

    @torch.no_grad()
    def detect(self, files: list[str | Path], device: str | None = None, batch_size: int = 1,
               score_threshold: float = SCORE_THRESHOLD, skip_bad_files: bool = False) -> list[dict[str, Any]]:
        """Detections for each image file: {file, width, height, detections: [{label, score, box
        [x0, y0, x1, y1]} ...]} (and a `masks` list of (H, W) bool arrays under the key "_masks" for
        Mask R-CNN runs, for drawing)."""
        from .inputs import load_image

        check_score_threshold(score_threshold)
        paths = image_paths(files, skip_bad_files)
        dev = pick_device(device)
        model = self.model.to(dev).eval()
        out = []
        for k in range(0, len(paths), batch_size):
            chunk = paths[k: k + batch_size]
            images = [load_image(p) for p in chunk]
            for p, img, d in zip(chunk, images, model([i.to(dev) for i in images])):
                d = {key: v.cpu().numpy() for key, v in d.items()}
                out.append(detection_row(p, img.shape[-2:], d, self.classes, score_threshold))
        return out

    def predict(self, files: list[str | Path], out_dir: str | Path | None = None, **kw: Any) -> list[dict[str, Any]]:
        """detect(), and with `out_dir` each image drawn with its boxes (and masks) as a PNG there, plus
        detections.json. Returns the JSON rows."""
        if out_dir is not None:
            check_writable(out_dir)
        rows = self.detect(files, **kw)
        if out_dir is not None:
            write_predictions(rows, Path(out_dir), self.classes)
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def check_score_threshold(score_threshold: float) -> None:
    if not 0.0 <= score_threshold <= 1.0:
        raise HeadstartError(f"--score-threshold must be in [0, 1]; got {score_threshold}")


def image_paths(files: list[str | Path], skip_bad_files: bool = False) -> list[Path]:
    """The image files to detect in (folders are searched); unreadable ones stop with all of them
    listed, unless skip_bad_files, which drops them (and says so)."""
    from ..console import log
    from ..data.images import readable
    from ..data.images import expand_files

    paths = expand_files(files)
    return [paths[i] for i in readable(paths, skip_bad_files, log=log)]


def detection_row(path: Path, size: tuple[int, int], d: dict[str, np.ndarray], classes: tuple[str, ...],
                  score_threshold: float) -> dict[str, Any]:
    """One image's row of detect(): the detector's outputs `d` (boxes, labels 1-based into `classes`,
    scores, masks (N, 1, H, W) probabilities for Mask R-CNN) kept at `score_threshold` and up, for an
    image of `size` (height, width). Shared by the run folder and ONNX exports, so both write the same."""
    keep = d["scores"] >= score_threshold
    row: dict[str, Any] = {"file": str(path), "width": int(size[1]), "height": int(size[0]), "detections": [
        {"label": classes[int(c) - 1], "score": round(float(s), 4), "box": [round(float(v), 1) for v in b]}
        for b, s, c in zip(d["boxes"][keep], d["scores"][keep], d["labels"][keep])]}
    if "masks" in d:
        row["_masks"] = torch.from_numpy(d["masks"][keep][:, 0] > 0.5)
    return row


def write_predictions(rows: list[dict[str, Any]], out_dir: Path, classes: tuple[str, ...]) -> None:
    """out_dir/<image stem>.png with boxes, labels, scores (and masks) drawn; out_dir/detections.json."""
    import io

    from torchvision.transforms.functional import pil_to_tensor, to_pil_image
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from ..data.transforms import open_rgb
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990",
               "#9a6324"]
    colour = {c: palette[i % len(palette)] for i, c in enumerate(classes)}
    used: set[str] = set()
    for r in rows:
        img = pil_to_tensor(open_rgb(r["file"]))
        dets = r["detections"]
        if "_masks" in r and len(dets):
            img = draw_segmentation_masks(img, r["_masks"], alpha=0.4, colors=[colour[d["label"]] for d in dets])
        if dets:
            img = draw_bounding_boxes(img, torch.tensor([d["box"] for d in dets], dtype=torch.float32),
                                      [f"{d['label']} {d['score']:.2f}" for d in dets],
                                      colors=[colour[d["label"]] for d in dets], width=2)
        stem = Path(r["file"]).stem
        name = stem if stem not in used else f"{stem}_{len(used)}"
        used.add(name)
        buf = io.BytesIO()
        to_pil_image(img).save(buf, format="PNG")
        atomic_write_bytes(out_dir / f"{name}.png", buf.getvalue())
        r["drawn"] = str(out_dir / f"{name}.png")
    atomic_write_json(out_dir / "detections.json", [{k: v for k, v in r.items() if not k.startswith("_")}
                                                    for r in rows])


def load_detection(d: Path, info: dict[str, Any], device: str | None = None) -> DetectionRun:
    """A finished detection run folder (headstart.load calls this for task "detect")."""
    from ..zoo.card import ModelCard

    spec = DetectorSpec.from_dict(info["spec"])
    card = ModelCard.from_dict(info["card"]) if info.get("card") else None
    model = build_detector(spec, card, pretrained=False)
    sd = read_run_weights(d, info)
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError:  # a tensor of another shape than the network's
        missing, unexpected = ["(a tensor's shape)"], []
    if [k for k in missing if not k.endswith("num_batches_tracked")] or unexpected:
        raise HeadstartError(f"run '{d}': {WEIGHTS_FILE} does not fit the detector its headstart.json describes; "
                             "run `headstart fit` again")
    metrics = read_run_metrics(d, info)
    return DetectionRun(dir=d, spec=spec, model=model.eval().to(pick_device(device)), info=info, metrics=metrics)


def evaluate_detector(run: DetectionRun, data: str | Path, skip_bad: bool = False, device: str | None = None,
                      batch_size: int = 1) -> dict[str, Any]:
    """COCO mAP of the run on labelled detection DATA (class names matched to the run's)."""
    from dataclasses import replace

    from ..console import log
    from .data import read_detection_data
    from .evaluate import coco_metrics, detect

    t0 = time.perf_counter()
    samples = read_detection_data(data, skip_bad=skip_bad, log=log)
    unknown = sorted(set(samples.classes) - set(run.classes))
    if unknown:
        raise HeadstartError(f"DATA '{data}' has {plural(len(unknown), 'class', 'classes')} the run was not trained "
                             f"on: {', '.join(unknown)}; the run knows {', '.join(run.classes)}")
    index = {c: i for i, c in enumerate(run.classes)}
    remap = np.array([index[c] for c in samples.classes], dtype=np.int64)
    images = tuple(replace(im, labels=remap[im.labels] if len(im.labels) else im.labels) for im in samples.images)
    samples = replace(samples, images=images, classes=run.classes)
    dev = pick_device(device)
    idx = np.arange(len(samples))
    masks = run.spec.kind == "mask" and samples.has_masks
    result = coco_metrics(detect(run.model.to(dev), samples, idx, dev, batch_size), samples, idx, masks=masks)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    result["classes"] = list(run.classes)
    return result
