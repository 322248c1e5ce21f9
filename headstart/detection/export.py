"""Exporting a finished detection run (Faster or Mask R-CNN, YOLO) as one file, and serving an ONNX export.

    headstart.export("runs/candy", format="onnx", out="candy.onnx")
    headstart.predict("candy.onnx", ["scene.jpg"], out_dir="drawn")   # onnxruntime, no PyTorch model

ONNX (torch.onnx.export, dynamo=False, opset 17): the whole torchvision detector, resizing and
normalization included, for one image per call.
  inputs   "image"            float32 [3, height, width], RGB scaled to [0, 1], any size
           "score_threshold"  float32 scalar, optional (an overridable initializer, default: the
                              detector's own: 0.05, YOLO 0.01): detections scoring at most this are dropped
                              before NMS, so a higher one also saves mask work
  outputs  "boxes"   float32 [n, 4]  x0, y0, x1, y1 in pixels of the input image
           "labels"  int64 [n]       1-based: label k is classes[k - 1] (0, the background, never comes out)
           "scores"  float32 [n]     decreasing
           "masks"   float32 [n, 1, height, width]  Mask R-CNN only: per-pixel probabilities (0.5 cuts them)
The threshold is a graph input rather than a constant because tracing records the branch it sees:
an image with no detection above a baked-in threshold would be traced as a graph that never
detects anything; it is traced at 0, so every step of the post-processing is recorded.
The resize is computed in float64 as eager PyTorch computes it (SameSizeTransform): torchvision's
traced and scripted resize works in float32, and about one image size in six then comes out a
pixel off, with other detections.

TorchScript (torch.jit.script, as torchvision supports): forward(images: list[Tensor]) returns
(losses, detections), torchvision's scripted convention; module.roi_heads.score_thresh is settable.
R-CNN runs only: a YOLO run exports to ONNX, with the same inputs and outputs (no masks) and the same checks.

Darknet files (--format darknet; a run from --model darknet:CFG,...): OUT.cfg, OUT.weights and OUT.names, read
back as Darknet reads them and checked to give the run's raw [yolo] maps (DARKNET_TOLERANCE) before any is written.

Both travel with the same JSON as classification exports (ONNX metadata_props["headstart"],
TorchScript extra file "headstart.json"; task "detect"), and both are checked before anything is
written: the reloaded export runs on synthetic candy scenes of sizes other than the traced one
(one tall, one wide enough for max_size to bound the resize, one whose resize float32 would round
differently) and must give the same detections as the run's PyTorch model: as many, the same
labels, boxes within BOX_TOLERANCE px, scores within SCORE_TOLERANCE, masks (cut at 0.5)
differing on at most MASK_TOLERANCE of their pixels. Measured on mobilenet_v2 Faster / Mask
R-CNN: boxes within 1.2e-4 px, scores within 3e-7, masks 2e-7 of pixels (ONNX); TorchScript: 0.

The export serves one image at a time; DetectionRun.detect batches 4 images by default, and
torchvision pads a batch to its largest image, so the run folder's detections for an image can
differ with the images batched beside it (batch_size=1 gives the export's).
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from .. import __version__
from ..errors import HeadstartError
from .model import detector_name
from .yolo import YoloDetector
from ..onnxio import EXPORT_FORMAT, EXTRA_FILE, METADATA_KEY, OPSET, Exported, first_line, onnx_session
from ..fileio import atomic_write_bytes
from .run import SCORE_THRESHOLD, DetectionRun, check_score_threshold, detection_row, image_paths, write_predictions

INPUT_NAME, THRESHOLD_NAME = "image", "score_threshold"
BOX_OUTPUTS = ("boxes", "labels", "scores")
TRACE_SIZE = (320, 256)  # width, height of the scene the graph is traced on
CHECK_SIZES = ((240, 352), (560, 176))  # checked on: a tall scene, one wide enough that max_size bounds it (and see
#                                          check_sizes: one whose resize float32 arithmetic would round differently)
BOX_TOLERANCE = 1e-2  # px: max abs difference of a box coordinate between the export and PyTorch
SCORE_TOLERANCE = 1e-4
MASK_TOLERANCE = 1e-3  # share of the masks' pixels whose 0.5 cut may differ (edge pixels of a box rounded apart)


def postprocessing(model: nn.Module) -> nn.Module:
    """Where a detector keeps its score threshold, NMS IoU and detections per image (score_thresh, nms_thresh,
    detections_per_img): an R-CNN's ROI heads, a YOLO detector itself."""
    return model if isinstance(model, YoloDetector) else model.roi_heads


def output_names(kind: str) -> tuple[str, ...]:
    """The ONNX outputs of a detector of `kind` ("faster" | "mask"), in order."""
    return BOX_OUTPUTS + (("masks",) if kind == "mask" else ())


def metadata(r: DetectionRun, fmt: str, min_score: float) -> dict[str, Any]:
    """The JSON that travels inside a detection export: enough to feed it and read its outputs."""
    spec = r.spec
    card = r.info.get("card") or {}
    m = r.metrics
    if fmt == "onnx":
        inputs = [
            {"name": INPUT_NAME, "dtype": "float32", "shape": [3, "height", "width"], "layout": "CHW, RGB",
             "note": "one image of any size, scaled to [0, 1]; the graph resizes and normalizes it itself"},
            {"name": THRESHOLD_NAME, "dtype": "float32", "shape": [], "default": min_score,
             "note": "optional: detections scoring at most this are dropped (before NMS)"}]
    else:
        inputs = [{"name": "images", "dtype": "float32", "shape": ["List", 3, "height", "width"],
                   "layout": "CHW, RGB", "note": "a list of images of any size, scaled to [0, 1]; forward returns "
                                                 "(losses, detections), detections a list of dicts of the outputs; "
                                                 f"module.roi_heads.score_thresh (default {min_score}) is settable"}]
    masks = {"name": "masks", "dtype": "float32", "shape": ["n", 1, "height", "width"],
             "note": "Mask R-CNN: per-pixel probabilities in the input image; 0.5 cuts them"}
    outputs = [{"name": "boxes", "dtype": "float32", "shape": ["n", 4],
                "note": "x0, y0, x1, y1 in pixels of the input image"},
               {"name": "labels", "dtype": "int64", "shape": ["n"],
                "note": "1-based: label k is classes[k - 1] (0, the background, never comes out)"},
               {"name": "scores", "dtype": "float32", "shape": ["n"], "note": "decreasing"}]
    return {
        "format": EXPORT_FORMAT,
        "exported_as": fmt,
        "headstart_version": __version__,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "task": "detect",
        "detector": {"kind": spec.kind, "name": detector_name(spec.kind),
                     "base": spec.base, "architecture": spec.arch, "min_score": min_score,
                     "nms_iou": float(postprocessing(r.model).nms_thresh),
                     "detections_per_image": int(postprocessing(r.model).detections_per_img)}
        | ({"anchors": [[list(a) for a in level] for level in spec.anchors]} if spec.anchors else {}),
        "card": {k: card.get(k) for k in ("name", "architecture", "source_dataset", "license")} if card else None,
        "start": r.info.get("start"),
        "classes": list(r.classes),
        "labels": "1-based: output label k is classes[k - 1]; 0 is the background and never comes out",
        "inputs": inputs,
        "outputs": outputs + ([masks] if spec.kind == "mask" else []),
        "preprocessing": {
            "min_size": spec.min_size, "max_size": spec.max_size, "mean": list(spec.mean), "std": list(spec.std),
            "in_graph": True,
            "steps": [
                "decode to 8-bit RGB (EXIF orientation applied, transparency composited on white), scale to [0, 1]",
                f"inside the network: resize so the shorter side is {spec.min_size} px and the longer at most "
                f"{spec.max_size} px (bilinear), subtract mean and divide by std per channel; boxes and masks come "
                "back in the input image's pixels",
            ],
        },
        "run": {"saved": r.info.get("saved"), "strategy": m.get("strategy"), "val_map": m.get("val_map"),
                "val_map_50": m.get("val_map_50")},
    }


class SameSizeTransform(GeneralizedRCNNTransform):
    """torchvision's GeneralizedRCNNTransform for export (see exportable()), but resize() computes
    the resized size as eager PyTorch does, floor(side * min(min_size / short side, max_size / long
    side)) in float64, also when traced or scripted. torchvision computes it in float32 there, so
    about one image size in six (242 px to 128, for one) comes out a pixel smaller than in PyTorch,
    and its detections differ. Inference only: a training target is refused."""

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None
               ) -> tuple[Tensor, dict[str, Tensor] | None]:
        torch._assert(target is None, "an exported detector predicts only: it takes no targets")
        if torchvision._is_tracing():
            shape = torch._shape_as_tensor(image)[-2:].to(torch.float64)
        else:
            shape = torch.tensor(image.shape[-2:], dtype=torch.float64)
        # float64 tensors on both sides: with a Python number, the ONNX exporter computes 1 / side in float32
        limits = torch.tensor([float(self.min_size[-1]), float(self.max_size)], dtype=torch.float64)
        scale = torch.min(limits / torch.stack([shape.min(), shape.max()]))
        size = torch.floor(shape * scale).to(torch.int64)
        if torchvision._is_tracing():
            hw = self._traced_size(size)
        else:
            hw = [int(size[0]), int(size[1])]
        image = nn.functional.interpolate(image[None], size=hw, mode="bilinear", align_corners=False)[0]
        return image, target

    @torch.jit.unused
    def _traced_size(self, size: Tensor) -> list[int]:
        """The traced (height, width) as interpolate's size: tensors, so that the graph computes them."""
        return [size[0], size[1]]  # type: ignore[list-item]

    # TorchScript reads an unused method's signature without evaluating string annotations (this module's are,
    # by `from __future__ import annotations`): give it the types themselves
    _traced_size.__annotations__ = {"size": Tensor, "return": list[int]}  # noqa: RUF012


def exportable(model: nn.Module) -> nn.Module:
    """A copy of the detector for export: CPU, float32, eval, its transform resizing as eager PyTorch does."""
    m = copy.deepcopy(model).cpu().float().eval()
    t = m.transform
    m.transform = SameSizeTransform(t.min_size, t.max_size, t.image_mean, t.image_std, t.size_divisible,
                                    t.fixed_size, _skip_resize=t._skip_resize).eval()
    return m


def check_sizes(min_size: int, max_size: int) -> list[tuple[int, int]]:
    """CHECK_SIZES, and a 4:3 scene whose resized side float32 arithmetic rounds to another pixel count than
    PyTorch's float64 (the trap SameSizeTransform avoids), when one with a height of 200 to 399 px exists."""
    sizes = list(CHECK_SIZES)
    for h in range(200, 400):
        w = h * 4 // 3
        s64 = min(min_size / h, max_size / w)
        s32 = np.float32(min(np.float32(min_size) / np.float32(h), np.float32(max_size) / np.float32(w)))
        if any(math.floor(v * s64) != math.floor(np.float32(v) * s32) for v in (h, w)):
            return sizes + [(w, h)]
    return sizes


class _Traceable(nn.Module):
    """The detector as the ONNX tracer needs it: one image and the score threshold (a tensor, so
    that it becomes a graph input) in, a tuple of outputs out."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, image: Tensor, score_threshold: Tensor) -> tuple[Tensor, ...]:
        postprocessing(self.model).score_thresh = score_threshold
        d = self.model([image])[0]
        return tuple(d[k] for k in self.names)


def _scene(width: int, height: int, seed: int) -> Tensor:
    """A synthetic candy scene as the detector takes it: float (3, H, W) in [0, 1]."""
    from .synthetic import candy_image

    img, _ = candy_image(np.random.default_rng(seed), width, height)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _onnx_bytes(model: nn.Module, kind: str, min_score: float, meta: dict[str, Any], name: str) -> bytes:
    """The ONNX file: traced at score threshold 0 (see the module's notes), the threshold then given its
    default as an initializer of the same name (so feeding it is optional), metadata set, onnx.checker run."""
    import onnx
    from onnx import numpy_helper

    names = output_names(kind)
    buf = io.BytesIO()
    wrapper = _Traceable(model, names).eval()  # the exporter restores the mode it found, for the model too
    if isinstance(model, YoloDetector):  # its eval-mode copy (BatchNorm folded) is made by an eager call: traced as is
        with torch.no_grad():
            model([_scene(*TRACE_SIZE, seed=0)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice, tracer notes
            torch.onnx.export(wrapper, (_scene(*TRACE_SIZE, seed=0), torch.tensor(0.0)), buf, dynamo=False,
                              input_names=[INPUT_NAME, THRESHOLD_NAME], output_names=list(names), opset_version=OPSET,
                              do_constant_folding=True,
                              dynamic_axes={INPUT_NAME: {1: "height", 2: "width"}, **{n: {0: "n"} for n in names}})
    except Exception as e:  # noqa: BLE001 - the exporter's own error types, per operator
        raise HeadstartError(f"{name} could not be exported to ONNX ({first_line(e)}); try --format "
                             "torchscript") from None
    finally:
        postprocessing(model).score_thresh = min_score
    proto = onnx.load_from_string(buf.getvalue())
    proto.graph.initializer.append(numpy_helper.from_array(np.array(min_score, dtype=np.float32), THRESHOLD_NAME))
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
    proto.doc_string = (f"headstart {meta['detector']['name']} -> {len(meta['classes'])} classes; input '{INPUT_NAME}' "
                        f"float32 [3, H, W] RGB in [0, 1], optional '{THRESHOLD_NAME}'; outputs {', '.join(names)}; "
                        f"labels are 1-based into metadata_props['{METADATA_KEY}'] classes")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise HeadstartError(f"the ONNX export of {name} fails onnx.checker ({first_line(e)}); nothing was written; "
                             "try --format torchscript") from None
    return proto.SerializeToString()


def _torchscript_bytes(model: nn.Module, meta: dict[str, Any], name: str) -> bytes:
    """The TorchScript file: torch.jit.script (torchvision's detectors support it; tracing would bake in the
    number of detections), the metadata as an extra file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated; torchvision's "always returns a tuple" note
            scripted = torch.jit.script(model)
    except Exception as e:  # noqa: BLE001 - TorchScript's frontend errors: a backbone it cannot compile
        raise HeadstartError(f"{name} could not be compiled to TorchScript ({first_line(e)}); try --format "
                             "onnx") from None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(scripted, buf, _extra_files={EXTRA_FILE: json.dumps(meta)})
    return buf.getvalue()


def _numpy(d: dict[str, Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in d.items()}


def compare(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """How far the export's detections are from PyTorch's on one image; raises when they are not the same
    detections. Each detection is paired with PyTorch's nearest one of the same label, so detections of
    nearly equal scores that come out in another order still pair up."""
    n = len(ref["scores"])
    if len(got["scores"]) != n:
        raise ValueError(f"{len(got['scores'])} detections where PyTorch finds {n}")
    out = {"box": 0.0, "score": 0.0, "mask": 0.0}
    if n == 0:
        return out
    cost = np.abs(got["boxes"][:, None, :] - ref["boxes"][None, :, :]).max(axis=2)
    cost[got["labels"][:, None] != ref["labels"][None, :]] = np.inf
    free = np.ones(n, dtype=bool)
    pairs = []
    for i in range(n):
        j = int(np.argmin(np.where(free, cost[i], np.inf)))
        if not free[j] or not np.isfinite(cost[i, j]):
            raise ValueError(f"detection {i} (label {int(got['labels'][i])}) has no PyTorch counterpart of its label")
        free[j] = False
        pairs.append(j)
    idx = np.asarray(pairs)
    out["box"] = float(cost[np.arange(n), idx].max())
    out["score"] = float(np.abs(got["scores"] - ref["scores"][idx]).max())
    if "masks" in ref:  # the share of the masks' pixels (either side's) whose 0.5 cut differs
        a, b = got["masks"] > 0.5, ref["masks"][idx] > 0.5
        out["mask"] = float((a != b).sum() / max(1, int((a | b).sum())))
    return out


def _check(run_export, model: nn.Module, sizes: list[tuple[int, int]], fmt: str, name: str) -> dict[str, Any]:
    """Run the reloaded export and PyTorch (`model`, as the run has it) on scenes of `sizes`; the figures,
    or a refusal."""
    scenes = [_scene(w, h, seed=1 + k) for k, (w, h) in enumerate(sizes)]
    worst = {"box": 0.0, "score": 0.0, "mask": 0.0}
    counts = []
    for k, x in enumerate(scenes):
        with torch.inference_mode():
            ref = _numpy(model([x])[0])
        try:
            got = run_export(x, k % 2 == 1)
        except Exception as e:  # noqa: BLE001 - onnxruntime's or TorchScript's own error types
            raise HeadstartError(f"the {fmt} export of {name} cannot run on a {x.shape[2]}x{x.shape[1]} image "
                                 f"({first_line(e)}); nothing was written") from None
        try:
            diff = compare(got, ref)
        except ValueError as e:
            raise HeadstartError(f"the {fmt} export of {name} disagrees with PyTorch on a {x.shape[2]}x{x.shape[1]} "
                                 f"image ({e}); nothing was written") from None
        counts.append(len(ref["scores"]))
        worst = {k: max(worst[k], diff[k]) for k in worst}
    if worst["box"] > BOX_TOLERANCE or worst["score"] > SCORE_TOLERANCE or worst["mask"] > MASK_TOLERANCE:
        raise HeadstartError(f"the {fmt} export of {name} disagrees with PyTorch (boxes within {worst['box']:.1e} px, "
                             f"scores within {worst['score']:.1e}, masks {worst['mask']:.1e} of pixels); nothing was "
                             "written")
    return {"images": [list(s) for s in sizes], "traced": list(TRACE_SIZE), "detections": counts,
            "max_box_diff_px": worst["box"], "max_score_diff": worst["score"]} | (
        {"mask_pixels_differing": worst["mask"]} if "masks" in ref else {})


DARKNET_TOLERANCE = 1e-4  # max abs difference of a raw [yolo] map value between the Darknet files and PyTorch


def export_darknet(r: DetectionRun, path: Path, t0: float) -> Exported:
    """A run from `--model darknet:...` back as Darknet files: `path` (.cfg), and beside it .weights and .names,
    checked (read back, the same raw maps) before any is written, each written atomically."""
    from .darknet_yolo import DarknetDetector, darknet_files

    if not isinstance(r.model, DarknetDetector):
        raise HeadstartError(f"run '{r.dir}' is a {detector_name(r.spec.kind)} on {r.spec.arch}, not a Darknet network: "
                             "only a run from --model darknet:CFG,... exports to Darknet files; use --format onnx")
    meta = metadata(r, "darknet", float(r.model.score_thresh))
    files, diff = darknet_files(copy.deepcopy(r.model).cpu().float().eval(), r.classes)
    if diff > DARKNET_TOLERANCE:
        raise HeadstartError(f"the Darknet files of run '{r.dir}' read back {diff:.2e} away from PyTorch's maps; "
                             "nothing was written (please report this)")
    for ext, data in files.items():
        atomic_write_bytes(path.with_suffix(ext), data)
    return Exported(path, "darknet", sum(len(b) for b in files.values()), diff, 1, time.perf_counter() - t0, meta,
                    {"files": [str(path.with_suffix(ext)) for ext in files]})


def export_detection(r: DetectionRun, fmt: str, path: Path, t0: float) -> Exported:
    """export_run() for a detection run: build, check, then write the file at `path` atomically."""
    if fmt == "darknet":
        return export_darknet(r, path, t0)
    if fmt != "onnx" and r.spec.kind == "yolo":
        raise HeadstartError(f"run '{r.dir}' is a YOLO detector: it exports to ONNX only (TorchScript export of YOLO "
                             "is not supported yet); use --format onnx")
    model = exportable(r.model)
    min_score = float(postprocessing(model).score_thresh)
    meta = metadata(r, fmt, min_score)
    name = f"run '{r.dir}' ({meta['detector']['name']} on {r.spec.arch})"
    names = output_names(r.spec.kind)
    if fmt == "onnx":
        data = _onnx_bytes(model, r.spec.kind, min_score, meta, name)
        try:
            session = onnx_session(data)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types
            raise HeadstartError(f"onnxruntime cannot load the ONNX export of {name} ({first_line(e)}); nothing was "
                                 "written; try --format torchscript") from None
        stored = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])

        def run_export(x: Tensor, explicit: bool) -> dict[str, np.ndarray]:  # the threshold: its default, or fed
            feed = {INPUT_NAME: x.numpy()} | ({THRESHOLD_NAME: np.array(min_score, np.float32)} if explicit else {})
            return dict(zip(names, session.run(list(names), feed)))
    else:
        data = _torchscript_bytes(model, meta, name)
        extra = {EXTRA_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
        stored = json.loads(extra[EXTRA_FILE])

        def run_export(x: Tensor, explicit: bool) -> dict[str, np.ndarray]:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "RCNN always returns a (Losses, Detections) tuple in scripting"
                return _numpy(loaded([x])[1][0])
    if stored != meta:
        raise HeadstartError(f"the {fmt} export lost its metadata on the way; nothing was written (please report this)")
    sizes = check_sizes(r.spec.min_size, r.spec.max_size)
    check = _check(run_export, copy.deepcopy(r.model).cpu().float().eval(), sizes, fmt, name)
    atomic_write_bytes(path, data)
    return Exported(path, fmt, len(data), check["max_box_diff_px"], len(sizes), time.perf_counter() - t0, meta, check)


class OnnxDetector:
    """The detection half of OnnxRun: predict() gives what DetectionRun.predict gives (rows of file,
    width, height, detections [{label, score, box}]; out_dir= draws them), one image per call."""

    def __init__(self, session, meta: dict[str, Any], path: Path) -> None:
        self.session, self.metadata, self.path = session, meta, path
        self.classes: tuple[str, ...] = tuple(meta["classes"])
        self.input_name = meta["inputs"][0]["name"]
        self.output_names = [o["name"] for o in meta["outputs"]]
        self.min_score = float(meta["detector"]["min_score"])

    def detect(self, files: list[str | Path], score_threshold: float = SCORE_THRESHOLD,
               skip_bad_files: bool = False) -> list[dict[str, Any]]:
        """DetectionRun.detect with onnxruntime. The graph drops what scores at most max(the run's own 0.05,
        just under score_threshold), so a high threshold spares the mask work, and a low one gives what the
        run folder gives."""
        from .inputs import load_image

        check_score_threshold(score_threshold)
        cut = np.float32(max(self.min_score, float(np.nextafter(np.float32(score_threshold), np.float32(0)))))
        out = []
        for p in image_paths(files, skip_bad_files):
            img = load_image(p)
            d = dict(zip(self.output_names, self.session.run(self.output_names, {
                self.input_name: img.numpy(), THRESHOLD_NAME: np.asarray(cut, dtype=np.float32)})))
            out.append(detection_row(p, tuple(img.shape[-2:]), d, self.classes, score_threshold))
        return out

    def predict(self, files: list[str | Path], out_dir: str | Path | None = None,
                score_threshold: float = SCORE_THRESHOLD, skip_bad_files: bool = False, device: str | None = None,
                **ignored: Any) -> list[dict[str, Any]]:
        """detect(), and with `out_dir` each image drawn with its boxes (and masks) as a PNG there, plus
        detections.json. Returns the JSON rows. `ignored`: what only classification takes (top_k, batch_size)."""
        if device not in (None, "cpu"):
            raise HeadstartError(f"--device {device}: ONNX files run on the CPU with onnxruntime; leave out --device, "
                                 "or predict with the run folder")
        rows = self.detect(files, score_threshold, skip_bad_files)
        if out_dir is not None:
            write_predictions(rows, Path(out_dir), self.classes)
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
