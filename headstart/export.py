"""Exporting a finished image run as one self-describing file, and predicting with an ONNX export.

    headstart.export("runs/pets", format="onnx", out="pets.onnx")
    headstart.OnnxRun("pets.onnx").predict(["cat.jpg"], top_k=3)   # onnxruntime, no PyTorch model
    headstart.predict("pets.onnx", ["cat.jpg"])                     # the same

The exported network is the whole TransferModel (body + head): float32 NCHW images in, already
prepared as the run's card says (resize, centre crop, mean/std), class logits out, any batch
size. The preparation, the class names and the input/output names travel inside the file as
JSON (ONNX: metadata_props["headstart"]; TorchScript: the extra file "headstart.json"), so a
server needs nothing else. An export is checked before it is written (ONNX: onnx.checker, and
onnxruntime against PyTorch on a random batch of a batch size other than the traced one;
TorchScript: the reloaded module against PyTorch) and written atomically.

Detection runs (Faster / Mask R-CNN) export too, one image of any size in, boxes, labels,
scores (and masks) out: headstart.detection.export, which export_run and OnnxRun hand them to.

ONNX uses PyTorch's TorchScript-based exporter (dynamo=False): it needs no onnxscript, takes
under a second for an EfficientNet, and gives a dynamic batch axis from `dynamic_axes`.
"""

from __future__ import annotations

import copy
import io
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .console import log
from .data.images import readable
from .errors import HeadstartError
from .fileio import atomic_write_bytes, check_writable
from .onnxio import EXPORT_FORMAT, EXTRA_FILE, METADATA_KEY, OPSET, Exported, first_line, onnx_session
from .data.images import expand_files
from .rundir import check_record
from .schemas import EXPORT, check
from .run import METRICS_FILE, RUN_FILE, WEIGHTS_FILE, Run, check_top_k, load_classifier, run_info, top_k_results
from .zoo.card import Preprocessing

FORMATS = ("onnx", "torchscript", "darknet")
DEFAULT_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "darknet": "model.cfg"}
INPUT_NAME, OUTPUT_NAME = "input", "logits"
TOLERANCE = 1e-4  # max abs difference of logits between the export and PyTorch (scaled up for large logits)


def _finished_run(run: Run | str | Path) -> Run:
    """The run to export: finished, an image or detection run. Checked from headstart.json before any
    weights load."""
    if getattr(run, "modality", None) == "detection":
        return run  # a DetectionRun
    if isinstance(run, Run):
        if run.modality != "image":
            raise _text_refusal(run.dir, run.card.name)
        return run
    d = Path(run).expanduser()
    if d.is_file():
        raise HeadstartError(f"'{d}' is a file, not a run folder; give the folder written by `headstart fit`")
    if not d.is_dir():
        raise HeadstartError(f"run folder '{d}' does not exist; give the folder written by `headstart fit`")
    info = run_info(d)
    if info is None:
        raise HeadstartError(f"'{d}' is not a headstart run (no valid {RUN_FILE}); give a folder written by "
                             "`headstart fit`")
    status = info.get("status")
    if status != "finished":
        raise HeadstartError(
            f"run '{d}' has not finished (status '{status}'); finish it with `headstart fit --resume {d}`, "
            "then export it"
        )
    check_record(d, info)
    card = info.get("card") or {}
    if info.get("task") == "detect":
        from .detection.run import load_detection

        return load_detection(d, info, "cpu")  # type: ignore[return-value]
    if card.get("modality") != "image":
        raise _text_refusal(d, card.get("name", "?"))
    return load_classifier(d, info, "cpu")


def _text_refusal(d: Path, model: str) -> HeadstartError:
    return HeadstartError(
        f"run '{d}' is a text run ({model}); export supports image runs only, for now: use the run folder "
        "itself (headstart.load, `headstart predict`)"
    )


def _out_path(r: Run, fmt: str, out: str | Path | None) -> Path:
    path = Path(out).expanduser() if out is not None else r.dir / DEFAULT_NAMES[fmt]
    if path.is_dir():
        raise HeadstartError(f"--out '{path}' is a folder; give a file path such as {path / DEFAULT_NAMES[fmt]}")
    if fmt == "onnx" and path.suffix.lower() != ".onnx":
        raise HeadstartError(f"--out '{path}' must end in .onnx for --format onnx (predict recognises exports by it); "
                             f"try {path.with_suffix('.onnx')}")
    if fmt == "darknet" and path.suffix.lower() != ".cfg":
        raise HeadstartError(f"--out '{path}' must end in .cfg for --format darknet (.weights and .names are written "
                             f"beside it); try {path.with_suffix('.cfg')}")
    if fmt == "torchscript" and path.suffix.lower() == ".onnx":
        raise HeadstartError(f"--out '{path}' ends in .onnx but --format is torchscript; use a .pt name, "
                             f"e.g. {path.with_suffix('.pt')}")
    if path.resolve().parent == r.dir.resolve() and path.name in (RUN_FILE, METRICS_FILE, WEIGHTS_FILE):
        raise HeadstartError(f"--out '{path}' would replace a file of the run itself; choose another name")
    check_writable(path, folder=False)
    return path


def metadata(r: Run, fmt: str) -> dict[str, Any]:
    """The JSON that travels inside an export: enough to prepare inputs and read outputs without headstart."""
    pre = r.preprocessing
    assert isinstance(pre, Preprocessing)
    c = pre.crop
    return {
        "format": EXPORT_FORMAT,
        "exported_as": fmt,
        "headstart_version": __version__,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "task": "classify",
        "card": {"name": r.card.name, "architecture": r.card.architecture, "source_dataset": r.card.source_dataset,
                 "license": r.card.license},
        "head": r.head.to_dict(),
        "classes": list(r.classes),
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", 3, c, c], "layout": "NCHW, RGB",
                  "note": "images prepared as `preprocessing` says; any batch size"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", len(r.classes)], "kind": "logits",
                   "note": "unnormalized class scores in the order of `classes`; softmax over axis 1 gives "
                           "probabilities"},
        "preprocessing": pre.to_dict() | {
            "input_size": c,
            "steps": [
                "decode to 8-bit RGB (EXIF orientation applied, transparency composited on white)",
                f"resize the shorter side to {pre.resize} px ({pre.interpolation})",
                f"centre crop {c}x{c}",
                "scale to [0, 1], subtract mean and divide by std per channel (RGB)",
                "float32, NCHW",
            ],
        },
        "run": {"saved": r.info.get("saved"), "body_id": r.body_id, "strategy": r.metrics.get("strategy"),
                "val_accuracy": r.metrics.get("val_accuracy")},
    }


def _example(pre: Preprocessing, batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, pre.crop, pre.crop, generator=torch.Generator().manual_seed(seed))


def _onnx_bytes(model: torch.nn.Module, example: torch.Tensor, meta: dict[str, Any], name: str) -> bytes:
    import onnx

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice, tracer notes
            torch.onnx.export(model, (example,), buf, dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=OPSET, do_constant_folding=True,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    except Exception as e:  # noqa: BLE001 - the exporter's own error types, per operator
        raise HeadstartError(f"{name} could not be exported to ONNX ({first_line(e)}); try --format torchscript") from None
    proto = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
    proto.doc_string = (f"headstart {meta['card']['name']} -> {len(meta['classes'])} classes; input '{INPUT_NAME}' "
                        f"float32 NCHW prepared per metadata_props['{METADATA_KEY}'], output '{OUTPUT_NAME}' logits")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise HeadstartError(f"the ONNX export of {name} fails onnx.checker ({first_line(e)}); nothing was written; "
                             "try --format torchscript") from None
    return proto.SerializeToString()


def _torchscript_bytes(model: torch.nn.Module, example: torch.Tensor, meta: dict[str, Any], name: str) -> bytes:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about Python values, deprecation notices
            traced = torch.jit.trace(model, (example,), check_trace=False)
    except Exception as e:  # noqa: BLE001 - the tracer's own error types
        raise HeadstartError(f"{name} could not be traced to TorchScript ({first_line(e)}); try --format onnx") from None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated: ONNX is the format to prefer
        torch.jit.save(traced, buf, _extra_files={EXTRA_FILE: json.dumps(meta)})
    return buf.getvalue()


def _check(got: np.ndarray, ref: np.ndarray, fmt: str) -> float:
    if got.shape != ref.shape:
        raise HeadstartError(f"the {fmt} export gives logits of shape {got.shape} for a batch PyTorch maps to "
                             f"{ref.shape}; nothing was written (please report this model)")
    diff = float(np.abs(got - ref).max())
    if not diff < TOLERANCE * max(1.0, float(np.abs(ref).max())):
        raise HeadstartError(f"the {fmt} export disagrees with PyTorch (max abs logit difference {diff:.2e}); "
                             "nothing was written; try the other --format")
    return diff


def export_run(run: Run | str | Path, format: str = "onnx", out: str | Path | None = None) -> Exported:
    """export(), also saying how closely the written file matches PyTorch (for the CLI)."""
    t0 = time.perf_counter()
    fmt = str(format).strip().lower()
    if fmt not in FORMATS:
        raise HeadstartError(f"--format '{format}' is not one of {', '.join(FORMATS)}")
    r = _finished_run(run)
    if fmt == "darknet" and r.modality != "detection":
        raise HeadstartError(f"--format darknet writes a YOLO detector trained from --model darknet:CFG,...; run "
                             f"'{r.dir}' is a classifier: use --format onnx")
    path = _out_path(r, fmt, out)
    if r.modality == "detection":
        from .detection.export import export_detection

        return export_detection(r, fmt, path, t0)  # type: ignore[arg-type]
    pre = r.preprocessing
    assert isinstance(pre, Preprocessing)
    model = copy.deepcopy(r.model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    meta = metadata(r, fmt)
    name = f"run '{r.dir}' ({r.card.architecture})"
    example, check = _example(pre, 2, 0), _example(pre, 3, 1)  # checked at another batch size than traced
    with torch.inference_mode():
        ref = model(check).numpy()
    if fmt == "onnx":
        data = _onnx_bytes(model, example, meta, name)
        try:
            session = onnx_session(data)
            got = session.run([OUTPUT_NAME], {INPUT_NAME: check.numpy()})[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types: an operator it lacks, a shape it rejects
            raise HeadstartError(f"onnxruntime cannot run the ONNX export of {name} ({first_line(e)}); nothing was "
                                 "written; try --format torchscript") from None
        stored = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    else:
        data = _torchscript_bytes(model, example, meta, name)
        extra = {EXTRA_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
        with torch.inference_mode():
            got = loaded(check).numpy()
        stored = json.loads(extra[EXTRA_FILE])
    if stored != meta:
        raise HeadstartError(f"the {fmt} export lost its metadata on the way; nothing was written (please report this)")
    diff = _check(got, ref, fmt)
    atomic_write_bytes(path, data)
    return Exported(path, fmt, len(data), diff, len(check), time.perf_counter() - t0, meta)


def export(run: Run | str | Path, format: str = "onnx", out: str | Path | None = None) -> Path:
    """Write a finished image run's whole network (body + head) as one ONNX or TorchScript file;
    returns its path (default RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt). Detection runs:
    see headstart.detection.export (one image in; boxes, labels, scores, masks out).

    Input: float32 NCHW images, prepared as the run's card says (resize, centre crop, mean/std),
    any batch size; output: class logits. The preparation and the class names are in the file
    (ONNX metadata_props["headstart"], TorchScript extra file "headstart.json"), as JSON.
    The file is checked against PyTorch before it is written, and written atomically.
    """
    r = export_run(run, format, out)
    log(f"exported {r.format} to {r.path} ({r.bytes / 1e6:.1f} MB); it {r.summary()}")
    return r.path


def is_onnx_file(path: Any) -> bool:
    return isinstance(path, (str, Path)) and str(path).lower().endswith(".onnx")


class OnnxRun:
    """An exported .onnx file, served with onnxruntime on the CPU: predict() gives what Run.predict
    gives, with the same image preparation (headstart.features.image_batches), read from the
    file's metadata. A detection export (metadata task "detect") is served by
    headstart.detection.export.OnnxDetector: modality "detection", predict() gives DetectionRun's rows."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise HeadstartError(f"ONNX file '{self.path}' does not exist; write one with `headstart export RUN_DIR`")
        try:
            self.session = onnx_session(str(self.path), threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types (InvalidProtobuf, Fail, ...)
            raise HeadstartError(f"'{self.path}' is not a readable ONNX model ({first_line(e)}); "
                                 "export it again with `headstart export`") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            meta = json.loads(raw) if raw else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
            raise HeadstartError(f"'{self.path}' has no headstart metadata (metadata_props['{METADATA_KEY}']); "
                                 "predict takes ONNX files written by `headstart export`")
        check(meta, EXPORT, f"'{self.path}': its headstart metadata", "export the run again with `headstart export`")
        self.metadata: dict[str, Any] = meta
        self.classes: tuple[str, ...] = tuple(meta["classes"])
        self.detector = None
        if meta.get("task") == "detect":
            from .detection.export import OnnxDetector

            self.detector = OnnxDetector(self.session, meta, self.path)
            return
        self.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        self.input_name, self.output_name = meta["input"]["name"], meta["output"]["name"]
        width = next((o.shape[-1] for o in self.session.get_outputs() if o.name == self.output_name), None)
        if not isinstance(width, int) or width != len(self.classes):
            raise HeadstartError(f"'{self.path}': its headstart metadata names {len(self.classes)} classes but the model's "
                                 f"output '{self.output_name}' has {width if isinstance(width, int) else 'no fixed'} "
                                 "columns; export the run again with `headstart export`")

    @property
    def modality(self) -> str:
        return "detection" if self.detector is not None else "image"

    def _classifier(self, what: str) -> None:
        if self.detector is not None:
            raise HeadstartError(f"'{self.path}' is a detection export: it has no {what}; use predict() (boxes, "
                                 "labels, scores per image)")

    def transform(self):
        """A PIL image (or a path) -> the float tensor (3, crop, crop) the ONNX input takes (as Run.transform)."""
        from .data.transforms import EvalTransform

        self._classifier("transform")
        return EvalTransform(self.preprocessing)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Class logits for a float32 NCHW batch already prepared."""
        self._classifier("logits")
        return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]

    def probabilities(self, files: list[str | Path], batch_size: int | None = None, skip_bad_files: bool = False,
                      num_workers: int | None = None) -> tuple[list[str], np.ndarray]:
        """(file names, class probabilities) for image files (folders are searched)."""
        from .features import image_batches

        self._classifier("class probabilities")
        paths = expand_files(files)
        paths = [paths[i] for i in readable(paths, skip_bad_files, log=log)]
        probs = np.empty((len(paths), len(self.classes)), dtype=np.float32)
        with torch.inference_mode():
            for row, x in image_batches(paths, self.preprocessing, torch.device("cpu"), batch_size, num_workers):
                z = self.logits(x.contiguous().numpy())
                e = np.exp(z - z.max(axis=1, keepdims=True))
                probs[row : row + len(z)] = e / e.sum(axis=1, keepdims=True)
        return [str(p) for p in paths], probs

    def predict(self, files: list[str | Path], top_k: int = 5, batch_size: int | None = None,
                skip_bad_files: bool = False, device: str | None = None, **detect: Any) -> list[dict[str, Any]]:
        """Label, score and top-k classes for each image file (folders are searched for images).
        A detection export: each image's boxes instead (`detect`: out_dir=, score_threshold=; top_k and
        batch_size do not apply)."""
        if self.detector is not None:
            return self.detector.predict(files, skip_bad_files=skip_bad_files, device=device, **detect)
        if detect:
            raise HeadstartError(f"{', '.join(detect)}: options of detection exports; '{self.path}' classifies")
        check_top_k(top_k)
        if device not in (None, "cpu"):
            raise HeadstartError(f"--device {device}: ONNX files run on the CPU with onnxruntime; leave out --device, "
                                 "or predict with the run folder")
        names, probs = self.probabilities(files, batch_size, skip_bad_files)
        return top_k_results(names, probs, self.classes, top_k, "file")
