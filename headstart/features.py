"""Running a frozen body once over a dataset, into the feature cache (headstart.cache).

A frozen body is a pure function of (weights, preprocessing, input file), so its output
is computed once and reused by every later fit, evaluate or rank on the same files.
An entry is built in a temporary folder and renamed into place only when complete, with the
sha256 of the features as they were computed, which every read checks.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .cache import CACHE_FORMAT, FEATURES_FILE, META_FILE, FeatureCache, Features, feature_key
from .console import progress, warn
from .errors import CannotWrite, HeadstartError, plural
from .fileio import atomic_dir, atomic_write_json
from .fuse import fold_batchnorm
from .data.transforms import ImageFiles, normalize
from .runtime import default_batch_size, default_workers, release_free_memory
from .surgery import pool_features
from .text.inputs import Tokenized
from .zoo.card import Preprocessing, TextPreprocessing


def image_batches(
    paths: Sequence[Path],
    pre: Preprocessing,
    device: torch.device,
    batch_size: int | None = None,
    num_workers: int | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, normalized float NCHW batch on `device`) for the files in order: the one way
    images reach a model (feature extraction, prediction, exported models). Decoding and resizing
    run in DataLoader workers; files that fail to decode are named together at the end."""
    batch_size = batch_size or default_batch_size(device)
    workers = default_workers(device) if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(
        ImageFiles(list(paths), pre),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    failed: list[str] = []
    row = 0
    if workers:
        release_free_memory()
    for images, ok in loader:
        if not bool(ok.all()):
            failed += [str(paths[row + i]) for i in torch.nonzero(~ok).flatten().tolist()]
        yield row, normalize(images, pre, device)
        row += len(images)
    if failed:
        raise HeadstartError(
            f"{plural(len(failed), 'file')} could not be decoded (changed since they were checked?): "
            f"{'; '.join(failed)}; fix or remove them"
        )


def run_body(
    body: nn.Module,
    pre: Preprocessing,
    paths: Sequence[Path],
    out: np.ndarray,
    device: torch.device,
    batch_size: int | None = None,
    num_workers: int | None = None,
    on_batch: Callable[[np.ndarray], None] | None = None,
) -> float:
    """Fill out[i] with the body's features of paths[i]; returns images per second.

    Decoding and resizing run in DataLoader workers (image_batches); the body runs in eval mode
    under inference_mode, channels_last, with BatchNorm folded into the convolutions, one batch
    at a time, and each batch goes straight into `out` (a memory map when caching), so
    memory stays flat whatever the size.
    """
    # outside inference mode: parameters made inside it could never train again
    body.eval().to(device, memory_format=torch.channels_last)
    example = torch.randn(2, 3, pre.crop, pre.crop, generator=torch.Generator().manual_seed(0))
    body = fold_batchnorm(body, example.to(device).contiguous(memory_format=torch.channels_last))
    t0 = time.perf_counter()
    with progress("extracting features", len(paths)) as advance, torch.inference_mode():
        for row, x in image_batches(paths, pre, device, batch_size, num_workers):
            f = pool_features(body(x)).float().cpu().numpy()
            if not np.isfinite(f).all():
                raise HeadstartError(
                    f"the model produced NaN or infinite features for {paths[row]} and nearby files; "
                    "its weights are probably damaged"
                )
            out[row : row + len(f)] = f
            if on_batch:
                on_batch(f)
            advance(len(f))
    return len(paths) / max(time.perf_counter() - t0, 1e-9)


def restat_batchnorm(body: nn.Module, pre: Preprocessing, paths: Sequence[Path], device: torch.device,
                     batch_size: int | None = None, num_workers: int | None = None) -> nn.Module:
    """A copy of `body` whose BatchNorm statistics are those of the images `paths` (AdaBN: the running means
    and variances re-estimated on another domain, every weight unchanged), or one line when it has none."""
    import copy

    body = copy.deepcopy(body).to(device).eval()
    norms = [m for m in body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise HeadstartError("--adapt adabn re-estimates BatchNorm statistics, and this model has no BatchNorm "
                             "layer; choose another method (self-training, coral)")
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
        m.train()
    with progress("BatchNorm statistics", len(paths)) as advance, torch.no_grad():
        for _row, x in image_batches(paths, pre, device, batch_size, num_workers):
            body(x)
            advance(len(x))
    return body.eval().cpu()


def run_text_body(
    body: nn.Module,
    tokens: Tokenized,
    out: np.ndarray,
    device: torch.device,
    batch_size: int | None = None,
    on_batch: Callable[[np.ndarray], None] | None = None,
) -> float:
    """Fill out[i] with the body's features of text i; returns texts per second.

    Texts run in order of length, so each batch is padded only to its own longest text;
    rows are written back in the original order (out is filled at the end, then on_batch
    sees it in row order).
    """
    body.eval().to(device)
    batch_size = batch_size or (64 if device.type == "cpu" else 256)
    order = np.argsort([len(r) for r in tokens.ids], kind="stable")
    result = np.empty_like(out) if isinstance(out, np.memmap) else out
    t0 = time.perf_counter()
    with progress("extracting features", len(tokens)) as advance, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            rows = [tokens.ids[i] for i in idx]
            x = torch.full((len(rows), max(len(r) for r in rows)), tokens.pad_id, dtype=torch.long)
            for j, r in enumerate(rows):
                x[j, : len(r)] = torch.as_tensor(r, dtype=torch.long)
            f = body(x.to(device)).float().cpu().numpy()
            if not np.isfinite(f).all():
                raise HeadstartError("the model produced NaN or infinite features; its weights are probably damaged")
            result[idx] = f
            advance(len(f))
    if result is not out:
        out[:] = result
    if on_batch:
        step = 4096
        for i in range(0, len(out), step):
            on_batch(np.asarray(out[i : i + step]))
    return len(tokens) / max(time.perf_counter() - t0, 1e-9)


def extract(
    body_factory: Callable[[], nn.Module],
    body_id: str,
    pre: Preprocessing | TextPreprocessing,
    paths: "Sequence[Path] | Tokenized",
    num_features: int,
    cache: FeatureCache,
    device: torch.device,
    batch_size: int | None = None,
    num_workers: int | None = None,
    model_name: str = "",
) -> Features:
    """Features of `paths` (image files, or tokenized texts) from the cache, or computed by the
    body (built only on a miss)."""
    t0 = time.perf_counter()
    key = feature_key(body_id, pre, paths)
    hit = cache.load(key, len(paths))
    if hit is not None:
        return Features(hit, cache_hit=True, seconds=time.perf_counter() - t0, key=key)
    body = body_factory()

    def compute(arr: np.ndarray, on_batch=None) -> float:
        if isinstance(paths, Tokenized):
            return run_text_body(body, paths, arr, device, batch_size, on_batch=on_batch)
        return run_body(body, pre, paths, arr, device, batch_size, num_workers, on_batch=on_batch)

    if not cache.enabled:
        arr = np.empty((len(paths), num_features), dtype=np.float32)
        ips = compute(arr)
        return Features(arr, False, time.perf_counter() - t0, key, ips)
    dest = cache.entry(key)
    h = hashlib.sha256()
    try:
        ips = _extract_into(dest, compute, h, key, len(paths), num_features, body_id, model_name, pre, paths)
    except (OSError, CannotWrite) as e:  # no space, no permission: the run goes on without the cache, and says so
        if e.errno not in CANNOT_WRITE:
            raise
        need = len(paths) * num_features * 4 / 2**20
        why = e.strerror if isinstance(e, OSError) else str(e)
        warn(f"could not write the feature cache entry {dest} ({why or type(e).__name__}; it needs about "
             f"{need:.0f} MB): extracting without caching")
        arr = np.empty((len(paths), num_features), dtype=np.float32)
        ips = compute(arr)
        return Features(arr, False, time.perf_counter() - t0, key, ips)
    loaded = cache.load(key, len(paths))
    if loaded is None:  # the entry we just wrote must read back; anything else is a bug or a full disk
        raise HeadstartError(f"could not read back the feature cache entry just written to {dest}; is the disk full?")
    return Features(loaded, False, time.perf_counter() - t0, key, ips)


CANNOT_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def _extract_into(dest: Path, compute, h, key: str, n: int, num_features: int, body_id: str, model_name: str, pre,
                  paths) -> float:
    """Features computed straight into a new cache entry (memory-mapped), its space reserved first: a disk
    that fills up is an OSError here, never a bus error on a write to the mapped file."""
    with atomic_dir(dest) as tmp:
        arr = np.lib.format.open_memmap(tmp / FEATURES_FILE, mode="w+", dtype=np.float32, shape=(n, num_features))
        reserve(tmp / FEATURES_FILE)
        ips = compute(arr, on_batch=lambda f: h.update(np.ascontiguousarray(f, dtype=np.float32).data))
        arr.flush()
        del arr
        atomic_write_json(tmp / META_FILE, {
            "format": CACHE_FORMAT, "key": key, "shape": [len(paths), num_features], "dtype": "float32",
            "sha256": h.hexdigest(), "body": body_id, "model": model_name, "preprocessing": pre.to_dict(),
            "n_files": len(paths),
            "first_file": "" if isinstance(paths, Tokenized) or not len(paths) else str(paths[0]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "headstart": __version__,
        })
    return ips


def reserve(path: Path) -> None:
    """Allocate the blocks of `path` (its current size) on disk now, where the system can."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: no reservation
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)
