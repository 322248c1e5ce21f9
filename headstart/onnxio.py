"""What every export shares, image or detection: the file format's names, what an export reports, an
onnxruntime session, and an exporter's error in one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPORT_FORMAT = "headstart-export/1"
METADATA_KEY = "headstart"  # ONNX metadata_props key
EXTRA_FILE = "headstart.json"  # TorchScript _extra_files name
OPSET = 17


@dataclass
class Exported:
    """What export() wrote and how closely it matches PyTorch."""

    path: Path
    format: str
    bytes: int
    max_abs_diff: float
    check_batch: int
    seconds: float
    metadata: dict[str, Any]
    check: dict[str, Any] | None = None  # detection: the check's figures (images, detections, box/score diffs)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "bytes": self.bytes,
                "max_abs_diff": self.max_abs_diff, "check_batch": self.check_batch,
                "seconds": round(self.seconds, 3), "metadata": self.metadata} | (
            {"check": self.check} if self.check is not None else {})

    def summary(self) -> str:
        """How closely the file matches PyTorch, in words."""
        c = self.check
        if c is None:
            return (f"matches PyTorch within {self.max_abs_diff:.1e} (max abs logit difference, random batch of "
                    f"{self.check_batch})")
        sizes = ", ".join(f"{w}x{h}" for w, h in c["images"])
        masks = f", masks {c['mask_pixels_differing']:.1e} of pixels" if "mask_pixels_differing" in c else ""
        return (f"matches PyTorch on {len(c['images'])} synthetic scenes ({sizes}; traced at {c['traced'][0]}x"
                f"{c['traced'][1]}): {' and '.join(map(str, c['detections']))} detections, boxes within "
                f"{c['max_box_diff_px']:.1e} px, scores within {c['max_score_diff']:.1e}{masks}")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:160]}" if text else type(e).__name__


def onnx_session(model: str | bytes, threads: int | None = None):
    """An onnxruntime CPU session using as many threads as torch does (torch.get_num_threads())."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    import torch

    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
