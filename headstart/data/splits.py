"""What image and text samples share: examples per class, and a stratified train/validation
split that also works with very few examples per class."""

from __future__ import annotations

import numpy as np

from ..errors import HeadstartError


def class_counts(labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    """Examples per class name (0 for a class with none)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    return {name: int(counts[i]) for i, name in enumerate(classes)}


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class gives round(n_c * val_fraction) examples to validation,
    at least one when it has two or more, and always keeps at least one for training."""
    if not 0.0 <= val_fraction < 1.0:
        raise HeadstartError(f"--val-split must be in [0, 1); got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = 0
        if val_fraction > 0 and len(idx) >= 2:
            n_val = min(len(idx) - 1, max(1, int(round(len(idx) * val_fraction))))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
