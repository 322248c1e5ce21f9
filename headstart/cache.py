"""The on-disk cache: body features per (body, preprocessing, data), and frozen bodies' tensors.

A frozen body is a pure function of (weights, preprocessing, input file), so its output is
computed once (headstart.features) and reused by every later fit, evaluate or rank on the same
files. Entries live under the cache folder as features/<key>/features.npy + meta.json, where the
key hashes the body's identity, the preprocessing and the data fingerprint (paths, sizes,
mtimes; texts: their token ids). An entry is built in a temporary folder and renamed into place
only when complete; on every read its shape, dtype and sha256 are checked, and a damaged entry
is deleted and recomputed, never used.

bodies/<body id>.safetensors keeps a frozen body's tensors as the run folder stores them, so that
a linear probe fitted again on cached features writes its run without building the network:
such a re-fit imports no torch at all. Also checked by sha256 on every read.

Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .console import warn
from .errors import CannotWrite
from .fileio import atomic_dir, atomic_write_json, sha256_file

CACHE_FORMAT = 1
FEATURES_FILE, META_FILE = "features.npy", "meta.json"
BODY_FILE = "body.safetensors"


def default_cache_dir() -> Path:
    env = os.environ.get("HEADSTART_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "headstart"


@dataclass
class Features:
    """Rows of `array` follow the order of the files they came from."""

    array: np.ndarray
    cache_hit: bool
    seconds: float
    key: str
    images_per_second: float = 0.0


class FeatureCache:
    """On-disk feature store; root=None disables it (--no-cache)."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root).expanduser() if root is not None else None

    @classmethod
    def from_options(cls, cache_dir: str | os.PathLike | None = None, no_cache: bool = False) -> "FeatureCache":
        return cls(None if no_cache else (cache_dir or default_cache_dir()))

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def entry(self, key: str) -> Path:
        assert self.root is not None
        return self.root / "features" / key[:2] / key

    def load(self, key: str, rows: int) -> np.ndarray | None:
        """The entry's features, memory-mapped, or None when absent or damaged (then removed)."""
        if self.root is None:
            return None
        d = self.entry(key)
        if not d.is_dir():
            return None
        reason = None
        try:
            meta = json.loads((d / META_FILE).read_text())
            arr = np.load(d / FEATURES_FILE, mmap_mode="r")
            if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
                reason = "written by another format"
            elif list(arr.shape) != meta["shape"] or arr.shape[0] != rows or str(arr.dtype) != meta["dtype"]:
                reason = f"shape {arr.shape} does not match its record"
            elif _digest(arr) != meta["sha256"]:
                reason = "checksum mismatch"
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            reason = f"unreadable ({type(e).__name__})"
        if reason:
            warn(f"feature cache entry {d} is damaged ({reason}); recomputing it")
            shutil.rmtree(d, ignore_errors=True)
            return None
        return arr

    # -- frozen bodies ---------------------------------------------------------------------------
    def body_entry(self, body_id: str) -> Path:
        assert self.root is not None
        return self.root / "bodies" / body_id[:2] / body_id

    def load_body(self, body_id: str) -> dict[str, np.ndarray] | None:
        """A body's tensors as NumPy arrays (its state_dict names), or None when absent or damaged."""
        if self.root is None or not body_id:
            return None
        d = self.body_entry(body_id)
        if not d.is_dir():
            return None
        try:
            meta = json.loads((d / META_FILE).read_text())
            if meta.get("format") != CACHE_FORMAT or meta.get("body") != body_id:
                raise ValueError("written by another format")
            if sha256_file(d / BODY_FILE) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            from safetensors.numpy import load_file

            return load_file(str(d / BODY_FILE))
        except Exception as e:  # noqa: BLE001 - a damaged entry of any kind is removed, then rebuilt by the next full fit
            warn(f"body cache entry {d} is damaged ({str(e)[:80] or type(e).__name__}); it will be written again")
            shutil.rmtree(d, ignore_errors=True)
            return None

    def store_body(self, body_id: str, tensors: dict[str, np.ndarray]) -> None:
        """Keep a frozen body's tensors (best effort: a cache that cannot be written costs a re-fit
        its speed, never its result)."""
        if self.root is None or not body_id or self.body_entry(body_id).is_dir():
            return
        from safetensors.numpy import save_file

        try:
            with atomic_dir(self.body_entry(body_id)) as tmp:
                save_file({k: np.require(v, requirements="C") for k, v in tensors.items()}, str(tmp / BODY_FILE))
                atomic_write_json(tmp / META_FILE, {"format": CACHE_FORMAT, "body": body_id,
                                                    "sha256": sha256_file(tmp / BODY_FILE), "tensors": len(tensors),
                                                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        except (OSError, ValueError, TypeError, CannotWrite) as e:
            warn(f"could not keep the body's tensors in the cache ({str(e)[:80]}); a re-fit will build it again")


def _digest(arr: np.ndarray) -> str:
    """sha256 of the array's bytes, read in 64 MB slices (the same bytes extraction hashed as it wrote)."""
    h = hashlib.sha256()
    step = max(1, (64 << 20) // max(1, arr[0].nbytes if len(arr) else 1))
    for i in range(0, len(arr), step):
        h.update(np.ascontiguousarray(arr[i : i + step]).data)
    return h.hexdigest()


def _data_id(inputs: Any) -> str:
    """Tokenized texts carry their own fingerprint (their token ids); image files are identified by
    path, size and mtime."""
    if hasattr(inputs, "fingerprint"):
        return inputs.fingerprint()
    from .data.images import files_fingerprint

    return files_fingerprint(inputs)


def feature_key(body_id: str, pre: Any, inputs: "Sequence[Path] | Any") -> str:
    """The cache key of a body's features of `inputs` under preprocessing `pre` (a card's Preprocessing
    or TextPreprocessing)."""
    blob = json.dumps(
        {"format": CACHE_FORMAT, "body": body_id, "pre": pre.to_dict(), "data": _data_id(inputs)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()
