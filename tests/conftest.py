"""Shared fixtures: tiny synthetic image data, a tiny model card, an isolated cache."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("PYTHONHASHSEED", "0")

SHAPES = ("circle", "square", "triangle")


def draw_shape(kind: str, rng: np.random.Generator, size: int = 48) -> Image.Image:
    """A coloured shape on a noisy background; each class has its own shape and hue."""
    bg = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
    im = Image.fromarray(bg, "RGB")
    d = ImageDraw.Draw(im)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, size=2))
    hue = {"circle": (230, 60, 60), "square": (60, 220, 60), "triangle": (70, 90, 240)}.get(kind, (200, 200, 60))
    color = tuple(int(np.clip(c + rng.integers(-25, 25), 0, 255)) for c in hue)
    if kind == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
    elif kind == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=color)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    return im


def make_image_folder(root: Path, per_class: int = 8, seed: int = 0, size: int = 48,
                      classes: tuple[str, ...] = SHAPES) -> Path:
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        kind = name if name in SHAPES else SHAPES[k % len(SHAPES)]
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            im = draw_shape(kind, rng, size)
            if i % 2:
                im.save(d / f"{i:03d}.jpg", quality=92)
            else:
                im.save(d / f"{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets the session's private cache and its own empty zoo, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "headstart-cache"
    monkeypatch.setenv("HEADSTART_CACHE", str(cache))
    monkeypatch.setenv("HEADSTART_ZOO", str(tmp_path_factory.mktemp("zoo")))
    yield cache


@pytest.fixture(autouse=True)
def _no_auto_trials(request, monkeypatch):
    """`--strategy auto` (the default) trains the body for up to its budget (a minute) in trials: tests that
    do not measure auto get the linear probe at once (budget 0); tests marked `auto_trials` run the trials."""
    if "auto_trials" not in request.keywords:
        monkeypatch.setattr("headstart.auto.DEFAULT_BUDGET", 0.0)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """3 classes x 8 images (PNG and JPEG), 48 px."""
    return make_image_folder(tmp_path_factory.mktemp("shapes") / "train", per_class=8, seed=0)


@pytest.fixture(scope="session")
def shapes_test_dir(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("shapes-test") / "test", per_class=4, seed=1)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Random weights of timm's tiny test_efficientnet (356k parameters), as safetensors."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    m = timm.create_model("test_efficientnet", pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "test_efficientnet.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_weights) -> dict[str, str]:
    """What to pass to fit for the tiny model: model=file:..., arch=..."""
    return {"model": f"file:{tiny_weights}", "arch": "timm:test_efficientnet"}


@contextmanager
def stopped_after_checkpoint(when: Callable[[Any], bool]) -> Iterator[None]:
    """Inside the block, a training run stops (KeyboardInterrupt, expected here) right after writing the
    checkpoint whose run state (headstart.engine.RunState) `when` accepts: a run killed there."""
    from headstart.engine import Engine

    original = Engine.checkpoint

    def stop(self, optimizer, scheduler):
        original(self, optimizer, scheduler)
        if when(self.state):
            raise KeyboardInterrupt

    Engine.checkpoint = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        Engine.checkpoint = original


@pytest.fixture(scope="session")
def stopped_run(tmp_path_factory, tiny_weights, shapes_dir) -> Path:
    """A finetune run of the tiny model (2 epochs) stopped after its first: headstart.json says "training",
    checkpoint/ holds epoch 1. Read only: a test that edits it copies it first."""
    import headstart
    from headstart.fileio import release_lock

    out = tmp_path_factory.mktemp("stopped") / "run"
    try:
        with stopped_after_checkpoint(lambda state: True):
            headstart.fit(shapes_dir, model=f"file:{tiny_weights}", arch="timm:test_efficientnet", out=out,
                          strategy="finetune", epochs=2, batch_size=8, augment="none")
    finally:
        release_lock(out)
    return out
