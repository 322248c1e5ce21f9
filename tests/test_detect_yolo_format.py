"""Detection DATA in YOLO's label layout: reading (both layouts, classes.txt or data.yaml), refusing or skipping
bad input in one line, telling it from classification DATA, and writing DetectionData back as YOLO."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_image_folder
from PIL import Image

from headstart.data.modality import data_modality
from headstart.detection.data import is_detection_data, read_detection_data
from headstart.detection.yolo_format import label_candidates, write_yolo
from headstart.errors import HeadstartError

NAMES = ("cat", "dog", "bird")


def image(path: Path, w: int = 40, h: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (90, 120, 30)).save(path)
    return path


def yolo(root: Path, labels: dict[str, str | None], layout: str = "split", names: object = NAMES,
         names_file: str | None = "classes.txt", size: tuple[int, int] = (40, 20)) -> Path:
    """Images NAME.png with their label text (None: no label file); split: images/ + labels/, beside: one folder."""
    for name, text in labels.items():
        stem = Path(name).stem
        image(root / ("images" if layout == "split" else "") / name, *size)
        if text is not None:
            label = root / ("labels" if layout == "split" else "") / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    if names_file:
        (root / names_file).write_text("".join(f"{n}\n" for n in names))  # type: ignore[attr-defined]
    return root


def error(data: Path, **kw) -> str:
    with pytest.raises(HeadstartError) as e:
        read_detection_data(data, log=lambda m: None, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def by_name(d) -> dict:
    return {im.path.name: im for im in d.images}


# --------------------------------------------------------------------------------------------- reading

@pytest.mark.parametrize("layout", ["split", "beside"])
def test_both_layouts_read_boxes_in_pixels_and_keep_background_images(tmp_path, layout):
    root = yolo(tmp_path / "y", {"a.png": "1 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.5 0.5\n", "b.png": "", "c.png": None,
                                 "d.png": "2 0.9 0.5 0.2 1.0"}, layout=layout)
    assert is_detection_data(root) and data_modality(root) == "detection"
    d = read_detection_data(root, log=lambda m: None)
    assert d.format == "yolo" and d.classes == NAMES and d.category_ids == (1, 2, 3) and len(d) == 4
    ims = by_name(d)
    assert (ims["a.png"].width, ims["a.png"].height) == (40, 20)  # from the file's header
    np.testing.assert_allclose(ims["a.png"].boxes, [[10, 5, 30, 15], [0, 0, 20, 10]])
    assert ims["a.png"].labels.tolist() == [1, 0]
    assert len(ims["b.png"].boxes) == 0 and len(ims["c.png"].boxes) == 0  # empty or missing: background, kept
    np.testing.assert_allclose(ims["d.png"].boxes, [[32, 0, 40, 20]])
    assert d.counts() == {"cat": 1, "dog": 1, "bird": 1}


def test_data_yaml_with_train_val_folders_and_a_names_mapping(tmp_path):
    root = tmp_path / "y"
    for split, stem in (("train", "a"), ("val", "b")):
        image(root / "images" / split / f"{stem}.jpg")
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / f"{stem}.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    image(root / "images" / "test" / "c.jpg")  # test: is not read
    (root / "data.yaml").write_text("path: /somewhere/else/coco8  # another machine\ntrain: images/train\n"
                                    "val: images/val\nnc: 3\nnames:\n  0: 'no'\n  1: 1.10\n  2: yes\n")
    assert is_detection_data(root) and is_detection_data(root / "data.yaml")
    for data in (root, root / "data.yaml"):
        d = read_detection_data(data, log=lambda m: None)
        assert d.classes == ("no", "1.10", "yes")  # YAML 1.1 would have made False, 1.1, True of them
        assert sorted(by_name(d)) == ["a.jpg", "b.jpg"] and all(im.labels.tolist() == [1] for im in d.images)


def test_roboflow_layout_with_a_names_list_and_relative_paths_that_point_up(tmp_path):
    root = tmp_path / "rf"
    for split in ("train", "valid"):
        image(root / split / "images" / f"{split}.png")
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / f"{split}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "README.roboflow.txt").write_text("exported")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['cat', 'dog']\n")
    d = read_detection_data(root, log=lambda m: None)
    assert d.classes == ("cat", "dog") and sorted(by_name(d)) == ["train.png", "valid.png"]


def test_darknet_layout_with_obj_names_and_a_list_of_images(tmp_path):
    root = yolo(tmp_path / "dk", {"obj/a.png": None, "obj/b.png": None}, layout="beside", names_file="obj.names")
    (root / "obj" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "obj" / "b.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    (root / "train.txt").write_text("obj/a.png\n")
    assert is_detection_data(root)
    assert len(read_detection_data(root, log=lambda m: None)) == 2  # every image under the folder
    (root / "data.yaml").write_text("train: train.txt\n")  # names from obj.names, images from the list
    d = read_detection_data(root, log=lambda m: None)
    assert d.classes == NAMES and [im.path.name for im in d.images] == ["a.png"]


def test_boxes_a_little_outside_are_clipped(tmp_path):
    root = yolo(tmp_path / "y", {"a.png": "0 0.502 0.5 1.0 1.0\n0 0.5 0.5 1.005 0.5\n"})
    np.testing.assert_allclose(read_detection_data(root).images[0].boxes, [[0.08, 0, 40, 20], [0, 5, 40, 15]],
                               atol=1e-4)


def test_label_files_are_found_below_the_data_folder_only(tmp_path):
    root = tmp_path / "images" / "set"
    assert label_candidates(root / "images" / "a.jpg", root) == [root / "labels" / "a.txt", root / "images" / "a.txt"]
    assert label_candidates(root / "a.jpg", root) == [root / "a.txt"]  # not tmp/labels/set/a.txt


# --------------------------------------------------------------------------------------------- bad input

GOOD = "0 0.5 0.5 0.5 0.5\n"


@pytest.mark.parametrize("text, says", [
    (GOOD + "0 0.5 0.5 0.5\n", ["line 2 of labels/a.txt", "'0 0.5 0.5 0.5'", "5 numbers", "4 fields"]),
    (GOOD + "cat 0.5 0.5 0.5 0.5\n", ["line 2 of labels/a.txt", "'cat' is not a (finite) number"]),
    ("0 0.5 0.5 0.2 0.2 0.3 0.3 0.1\n", ["line 1 of labels/a.txt", "polygons"]),
    ("0.5 0.5 0.5 0.5 0.5\n", ["line 1 of labels/a.txt", "not a whole number"]),
    (GOOD + GOOD + "0 320 240 50 60\n", ["line 3 of labels/a.txt", "outside 0..1", "fractions of the image"]),
    ("0 0.5 0.5 0 0.5\n", ["line 1 of labels/a.txt", "zero or negative width"]),
])
def test_bad_label_lines_name_file_line_and_fix_then_are_skipped(tmp_path, text, says):
    root = yolo(tmp_path / "y", {"a.png": text, "b.png": GOOD})
    msg = error(root)
    assert all(s in msg for s in says), msg
    assert "--skip-bad" in msg and "images/a.png" in msg
    logged: list[str] = []
    d = read_detection_data(root, skip_bad=True, log=logged.append)
    assert len(logged) == 1 and "dropping" in logged[0] and "labels/a.txt" in logged[0]
    assert len(d) == 2 and len(by_name(d)["b.png"].boxes) == 1  # the image stays
    assert len(by_name(d)["a.png"].boxes) == text.count("\n") - 1


def test_class_index_outside_the_names(tmp_path):
    root = yolo(tmp_path / "y", {"a.png": GOOD + "3 0.5 0.5 0.1 0.1\n-1 0.5 0.5 0.1 0.1\n"})
    msg = error(root)
    assert "2 label lines have a class index outside the 3 names of classes.txt (0 to 2)" in msg
    assert "line 2 of labels/a.txt (class 3)" in msg and "line 3 of labels/a.txt (class -1)" in msg
    logged: list[str] = []
    d = read_detection_data(root, skip_bad=True, log=logged.append)
    assert d.images[0].labels.tolist() == [0] and len(logged) == 1 and "class index" in logged[0]


def test_label_file_without_an_image(tmp_path):
    root = yolo(tmp_path / "y", {"a.png": GOOD})
    (root / "labels" / "ghost.txt").write_text(GOOD)
    (root / "labels" / "classes.txt").write_text("cat\n")  # where LabelImg writes the names: not a label
    msg = error(root)
    assert "1 label file has no image" in msg and "labels/ghost.txt" in msg and "--skip-bad" in msg
    logged: list[str] = []
    assert len(read_detection_data(root, skip_bad=True, log=logged.append)) == 1
    assert logged == [f"YOLO folder '{root}': ignoring 1 label file without an image: labels/ghost.txt"]


def test_several_kinds_of_bad_input_with_skip_bad_log_one_line_each(tmp_path):
    root = yolo(tmp_path / "y", {"a.png": GOOD + "7 0.5 0.5 0.1 0.1\n0 0.5\n", "b.png": GOOD, "c.png": GOOD})
    (root / "labels" / "ghost.txt").write_text(GOOD)
    (root / "images" / "c.png").write_bytes(b"not a png")
    logged: list[str] = []
    d = read_detection_data(root, skip_bad=True, log=logged.append)
    assert len(logged) == 4 and sorted(by_name(d)) == ["a.png", "b.png"]
    assert ["label file" in logged[0], "class index" in logged[1], "c.png" in logged[2], "bad box" in logged[3]] == \
        [True] * 4


def test_class_names_missing_or_malformed(tmp_path):
    root = yolo(tmp_path / "y", {"a.png": GOOD}, names_file=None)
    assert is_detection_data(root)  # images/ + labels/: the reader asks for the names
    msg = error(root)
    assert f"YOLO folder '{root}' has no class names" in msg and "classes.txt" in msg and "data.yaml" in msg
    (root / "classes.txt").write_text("cat\n\ndog\n")
    assert f"'{root / 'classes.txt'}' has blank lines (2)" in error(root)
    (root / "classes.txt").write_text("cat\ndog\ncat\n")
    assert "names 'cat' more than once" in error(root)


@pytest.mark.parametrize("text, says", [
    ("names: [cat, dog\n", ["not valid YAML at line 2", "fix the file"]),
    ("names: [cat, dog]\nnc: 3\n", ["says nc: 3 but names: lists 2"]),
    ("names: {0: cat, 2: dog}\n", ["numbers the classes 0, 2", "without gaps"]),
    ("names: {a: cat}\n", ["keys 'a' are not class indices"]),
    ("names: [cat, [dog]]\n", ["entries 1 are not names"]),
    ("names: [cat, dog]\ntrain: images/train\n", ["train: images/train is not found", "remove train: and val:"]),
    ("names: cat\n", ["names: is a str; give a list"]),
])
def test_bad_data_yaml_names_the_file_and_the_fix(tmp_path, text, says):
    root = yolo(tmp_path / "y", {"a.png": GOOD}, names_file=None)
    (root / "data.yaml").write_text(text)
    msg = error(root)
    assert str(root / "data.yaml") in msg and all(s in msg for s in says), msg


def test_no_label_file_at_all_or_no_images(tmp_path):
    root = yolo(tmp_path / "y", {"a.png": None, "b.png": None})
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [cat]\n")
    assert "none of its 2 images has a label file" in error(root)
    empty = tmp_path / "e"
    (empty / "images").mkdir(parents=True)
    (empty / "data.yaml").write_text("names: [cat]\n")
    assert "holds no images" in error(empty)


# --------------------------------------------------------------------------------------------- what is detection DATA

def test_classification_folders_are_not_yolo(tmp_path):
    images = make_image_folder(tmp_path / "classes", per_class=1)
    assert not is_detection_data(images) and data_modality(images) == "image"
    (images / "classes.txt").write_text("circle\nsquare\n")  # a list of the classes does not make it YOLO
    assert not is_detection_data(images)
    texts = tmp_path / "texts"
    for c in ("images", "labels"):
        (texts / c).mkdir(parents=True)
        (texts / c / "1.txt").write_text("a review")
    assert not is_detection_data(texts) and data_modality(texts) == "text"
    captions = yolo(tmp_path / "captions", {"a.png": "a photo of a cat"}, layout="beside", names_file=None)
    assert not is_detection_data(captions)  # images with a .txt beside need a names file to count
    assert not is_detection_data(tmp_path / "nope.yaml") and not is_detection_data(tmp_path / "classes" / "x.yml")
    (tmp_path / "other.yaml").write_text("train: a\n")
    assert not is_detection_data(tmp_path / "other.yaml")


# --------------------------------------------------------------------------------------------- writing

def coco_source(root: Path) -> Path:
    """A COCO set with two images of the same name in two folders, a background image and fractional boxes."""
    root.mkdir(parents=True)
    for f, (w, h) in {"a/x.png": (50, 30), "b/x.png": (64, 48), "bg.jpg": (20, 20)}.items():
        image(root / f, w, h)
    anns = [(1, 1, [0, 0, 50, 30]), (1, 2, [3.25, 4.5, 10.125, 7.75]), (2, 3, [60, 40, 4, 8]), (2, 1, [0.1, 0.2, 1, 1])]
    doc = {"images": [{"id": i + 1, "file_name": f} for i, f in enumerate(["a/x.png", "b/x.png", "bg.jpg"])],
           "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "iscrowd": 0}
                           for k, (i, c, b) in enumerate(anns)],
           "categories": [{"id": i + 1, "name": n} for i, n in enumerate(["cat: the pet", 'say "dog"', "no"])]}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def same(a, b) -> None:
    assert a.classes == b.classes and len(a) == len(b)
    for x, y in zip(sorted(a.images, key=lambda i: i.path.read_bytes()), sorted(b.images, key=lambda i: i.path.read_bytes())):
        assert (x.width, x.height) == (y.width, y.height) and x.labels.tolist() == y.labels.tolist()
        np.testing.assert_allclose(x.boxes, y.boxes, rtol=1e-6, atol=1e-6 * max(x.width, x.height))


def test_coco_to_yolo_and_back_gives_the_same_data(tmp_path):
    coco = read_detection_data(coco_source(tmp_path / "coco"))
    out = write_yolo(coco, tmp_path / "out")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["bg.jpg", "x.png", "x_1.png"]
    assert (out / "labels" / "bg.txt").read_text() == "" and (out / "classes.txt").read_text().splitlines()[1] == 'say "dog"'
    doc = yaml.safe_load((out / "data.yaml").read_text())  # as Ultralytics reads it
    assert doc["names"] == {0: "cat: the pet", 1: 'say "dog"', 2: "no"} and doc["nc"] == 3 and doc["train"] == "images"
    assert is_detection_data(out)
    back = read_detection_data(out)
    assert back.format == "yolo"
    same(coco, back)
    (out / "data.yaml").unlink()  # classes.txt alone says the same
    same(coco, read_detection_data(out))


def test_candy_scenes_in_yolo_layout_in_place(tmp_path):
    from headstart.detection.synthetic import write_candy

    root = write_candy(tmp_path / "candy", n_images=3, seed=1, size=(64, 48))
    candy = read_detection_data(root)
    (root / "annotations.json").unlink()  # the demo's scenes as YOLO: images/ stays, labels/ comes beside it
    logged: list[str] = []
    write_yolo(candy, root, overwrite=True, log=logged.append)
    assert logged == [f"writing boxes only to '{root}': YOLO's detection labels do not hold the masks"]
    same(candy, read_detection_data(root))


def test_fingerprint_follows_the_label_files(tmp_path):
    root = yolo(tmp_path / "y", {"a.png": GOOD})
    before = read_detection_data(root).fingerprint()
    assert read_detection_data(root).fingerprint() == before
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    assert read_detection_data(root).fingerprint() != before


def test_write_yolo_refuses_a_non_empty_folder_unless_told(tmp_path):
    data = read_detection_data(yolo(tmp_path / "src", {"a.png": GOOD, "b.png": GOOD}))
    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "old.txt").write_text(GOOD)
    image(out / "images" / "old.png")
    with pytest.raises(HeadstartError, match="is not empty.*overwrite=True"):
        write_yolo(data, out)
    assert (out / "labels" / "old.txt").exists()
    write_yolo(data, out, overwrite=True)  # what the old dataset left would be read with the new one: removed
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["a.txt", "b.txt"]
    same(data, read_detection_data(out))
    write_yolo(read_detection_data(out), out, overwrite=True)  # in place: its own images stay
    same(data, read_detection_data(out))
    (tmp_path / "file").write_text("x")
    with pytest.raises(HeadstartError, match="is a file"):
        write_yolo(data, tmp_path / "file")
