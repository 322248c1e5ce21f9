"""DATA reading: layouts, every mistake named before any work, odd image modes converted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from headstart.data import drop_bad_images, read_image_data, stratified_split
from headstart.data.transforms import ImageLoader, open_rgb
from headstart.errors import HeadstartError
from headstart.zoo.card import Preprocessing

from conftest import make_image_folder


def test_folder_layout(shapes_dir):
    s = read_image_data(shapes_dir)
    assert s.classes == ("circle", "square", "triangle")
    assert len(s) == 24 and s.counts() == {"circle": 8, "square": 8, "triangle": 8}
    assert all(s.classes[label] == p.parent.name for p, label in zip(s.paths, s.labels))


def test_csv_layout_with_relative_paths(shapes_dir, tmp_path):
    csv = shapes_dir.parent / "labels.csv"
    rows = ["path,label"] + [f"train/{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(shapes_dir.rglob("*.*"))]
    csv.write_text("\n".join(rows) + "\n")
    s = read_image_data(csv)
    assert len(s) == 24 and s.classes == ("circle", "square", "triangle")


@pytest.mark.parametrize("setup, message", [
    (lambda d: d / "nope", "does not exist"),
    (lambda d: d, "is empty"),
    (lambda d: (d / "only").mkdir() or make_image_folder(d, 2, classes=("only",)), r"1 class \('only'\).*at least 2"),
    (lambda d: make_image_folder(d, 2, classes=("a", "b")) and (d / "c").mkdir() or d, "'c' has no images"),
    (lambda d: Image.new("RGB", (8, 8)).save(d / "x.png") or d, "1 image but no class subfolders"),
])
def test_bad_folders_are_named(tmp_path, setup, message):
    with pytest.raises(HeadstartError, match=message):
        read_image_data(setup(tmp_path))


def test_csv_mistakes_are_named(tmp_path, shapes_dir):
    bad_cols = tmp_path / "a.csv"
    bad_cols.write_text("file,class\nx.png,a\n")
    with pytest.raises(HeadstartError, match="needs columns 'path' and 'label'; found 'file', 'class'"):
        read_image_data(bad_cols)
    missing = tmp_path / "b.csv"
    missing.write_text("path,label\nnope1.png,a\nnope2.png,b\n")
    with pytest.raises(HeadstartError, match="2 paths do not exist.*nope1.png, nope2.png"):
        read_image_data(missing)
    other = tmp_path / "c.txt"
    other.write_text("hello")
    with pytest.raises(HeadstartError, match="not a CSV"):
        read_image_data(other)


def test_every_bad_file_is_listed_then_skipped_on_request(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=4, classes=("a", "b"))
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    (root / "b" / "notes.jpg").write_text("this is text")
    good = root / "b" / "000.png"
    data = good.read_bytes()
    (root / "b" / "truncated.png").write_bytes(data[: len(data) // 2])
    s = read_image_data(root)
    with pytest.raises(HeadstartError, match="3 files in DATA are not readable images") as e:
        drop_bad_images(s, skip_bad_files=False)
    for name in ("broken.png", "notes.jpg", "truncated.png"):
        assert name in str(e.value)
    assert "\n" not in str(e.value) and "--skip-bad-files" in str(e.value)
    kept = drop_bad_images(s, skip_bad_files=True)
    assert len(kept) == len(s) - 3


def test_truncated_jpeg_is_caught(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=2, classes=("a", "b"), size=96)
    jpg = root / "a" / "001.jpg"
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) // 2])
    with pytest.raises(HeadstartError, match="001.jpg"):
        drop_bad_images(read_image_data(root), skip_bad_files=False)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "CMYK", "1"])
def test_odd_modes_become_rgb(tmp_path, mode):
    arr = (np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)
    im = Image.fromarray(arr, "L").convert(mode) if mode not in ("I;16",) else Image.fromarray(arr.astype(np.uint16) * 257)
    path = tmp_path / f"img.{'tif' if mode in ('CMYK', 'I;16') else 'png'}"
    im.save(path)
    rgb = open_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (32, 32)
    x = ImageLoader(Preprocessing(crop=16, resize=20))(path)
    assert x.shape == (16, 16, 3) and x.dtype.is_floating_point is False


def test_rgba_transparency_is_composited_on_white(tmp_path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert open_rgb(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    im.save(tmp_path / "r.jpg", exif=exif)
    assert open_rgb(tmp_path / "r.jpg").size == (20, 40)


def test_stratified_split_keeps_every_class_in_training():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 1)
    tr, va = stratified_split(labels, 0.2, seed=3)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == len(labels)
    assert np.bincount(labels[va], minlength=3).tolist() == [2, 1, 0]
    assert set(labels[tr]) == {0, 1, 2}
    assert np.array_equal(stratified_split(labels, 0.2, 3)[1], va)
    with pytest.raises(HeadstartError, match="--val-split must be in"):
        stratified_split(labels, 1.5, 0)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    arr = np.full((8, 8), 65535 // 2, dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    r, g, b = open_rgb(tmp_path / "g16.png").getpixel((0, 0))
    assert r == g == b and 120 <= r <= 135


def test_a_large_image_is_checked_without_pil_s_warning_on_stderr(tmp_path):
    """PIL warns (DecompressionBombWarning) about images over MAX_IMAGE_PIXELS; headstart reads them quietly.
    In a process of its own: pytest puts its own warning filters first."""
    import subprocess
    import sys

    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20), (1, 2, 3)).save(path)
    code = ("from PIL import Image; Image.MAX_IMAGE_PIXELS = 300\n"  # 400 pixels: over it, under twice it (an error)
            "from headstart.data.images import check_image\n"
            f"assert check_image(__import__('pathlib').Path({str(path)!r})) is None\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "DecompressionBomb" not in done.stderr, done.stderr
