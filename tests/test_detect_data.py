"""Detection DATA: reading COCO JSON and Pascal VOC folders, and refusing (or skipping) bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from headstart.detection.data import (
    DetectionData,
    is_detection_data,
    mask_of,
    read_detection_data,
    split_images,
)
from headstart.detection.synthetic import write_candy
from headstart.errors import HeadstartError


@pytest.fixture(scope="module")
def candy_master(tmp_path_factory) -> Path:
    return write_candy(tmp_path_factory.mktemp("candy") / "c", n_images=6, seed=0)


@pytest.fixture
def candy(candy_master, tmp_path) -> Path:
    """A fresh copy of the 6-image candy set that a test may edit."""
    return Path(shutil.copytree(candy_master, tmp_path / "c"))


def coco(root: Path, images: list[tuple[str, int, int]], anns: list[dict], cats=("cat", "dog"),
         name: str = "annotations.json", **extra) -> Path:
    """A tiny COCO dataset: grey PNGs of the given sizes in root/, annotations in root/name.
    anns need only image_id, category_id and bbox; ids are filled in."""
    root.mkdir(parents=True, exist_ok=True)
    for fname, w, h in images:
        Image.new("RGB", (w, h), (90, 90, 90)).save(root / fname)
    doc = {"images": [{"id": i + 1, "file_name": f, "width": w, "height": h} for i, (f, w, h) in enumerate(images)],
           "annotations": [{"id": i + 1, "iscrowd": 0, **a} for i, a in enumerate(anns)],
           "categories": [{"id": i + 1, "name": c} for i, c in enumerate(cats)], **extra}
    (root / name).write_text(json.dumps(doc))
    return root / name


def edit(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def voc(root: Path, items: list[tuple[str, int, int, list[tuple[str, int, int, int, int]]]], size: bool = True) -> Path:
    """A tiny Pascal VOC folder: per image (file, w, h, [(name, xmin, ymin, xmax, ymax)])."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for fname, w, h, objs in items:
        Image.new("RGB", (w, h), (120, 60, 30)).save(root / "JPEGImages" / fname)
        sz = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>" if size else ""
        ob = "".join(f"<object><name>{n}</name><difficult>{int(n == 'bird')}</difficult><bndbox><xmin>{a}</xmin>"
                     f"<ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objs)
        (root / "Annotations" / (Path(fname).stem + ".xml")).write_text(
            f"<annotation><folder>VOC</folder><filename>{fname}</filename>{sz}{ob}</annotation>")
    return root


def error(fn, *args, **kw) -> str:
    with pytest.raises(HeadstartError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------------------------- reading


def test_candy_reads_with_boxes_labels_and_masks(candy_master):
    doc = json.loads((candy_master / "annotations.json").read_text())
    d = read_detection_data(candy_master, log=lambda m: None)
    assert isinstance(d, DetectionData) and d.modality == "detection" and d.format == "coco"
    assert d.classes == ("chocolate_bar", "lollipop", "gummy_bear", "mint") and d.category_ids == (1, 2, 3, 4)
    assert len(d) == 6 and d.has_masks and d.source == str(candy_master)
    assert sum(d.counts().values()) == len(doc["annotations"])
    by_id = {im.image_id: im for im in d.images}
    kinds = set()
    for im_doc in doc["images"]:
        im = by_id[im_doc["id"]]
        assert im.path == (candy_master / "images" / im_doc["file_name"]).absolute() and im.path.is_absolute()
        assert (im.width, im.height) == (im_doc["width"], im_doc["height"])
        anns = [a for a in doc["annotations"] if a["image_id"] == im_doc["id"]]
        assert im.boxes.dtype == np.float32 and im.boxes.shape == (len(anns), 4) and im.labels.dtype == np.int64
        for j, a in enumerate(anns):
            x, y, w, h = a["bbox"]
            np.testing.assert_allclose(im.boxes[j], [x, y, x + w, y + h])
            assert d.classes[im.labels[j]] == doc["categories"][a["category_id"] - 1]["name"]
            m = mask_of(im, j)
            assert m.shape == (im.height, im.width) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
            kind = "polygon" if isinstance(a["segmentation"], list) else "rle"
            kinds.add(kind)
            assert abs(int(m.sum()) - a["area"]) <= (0.1 * a["area"] if kind == "polygon" else 0)
            ys, xs = np.nonzero(m)
            assert xs.min() >= x - 1 and xs.max() <= x + w and ys.min() >= y - 1 and ys.max() <= y + h
    assert kinds == {"polygon", "rle"}


def test_mask_of_uncompressed_rle(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 6, 4)], [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2],
                                                    "segmentation": {"size": [4, 6], "counts": [5, 2, 2, 2, 13]}}])
    d = read_detection_data(ann)
    assert d.has_masks
    m = mask_of(d.images[0], 0)
    assert m[1:3, 1:3].all() and m.sum() == 4


def test_coco_release_layout_annotations_folder_and_split_folder(candy, tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.move(candy / "images", root / "train2017")
    shutil.move(candy / "annotations.json", root / "annotations" / "instances_train2017.json")
    assert is_detection_data(root) and is_detection_data(root / "annotations" / "instances_train2017.json")
    for data in (root, root / "annotations" / "instances_train2017.json"):
        d = read_detection_data(data)
        assert len(d) == 6 and d.images[0].path.parent == (root / "train2017").absolute()
    # a second annotation file makes the folder ambiguous: the message names both and asks for one
    shutil.copy(root / "annotations" / "instances_train2017.json", root / "annotations" / "instances_val2017.json")
    assert is_detection_data(root)
    msg = error(read_detection_data, root)
    assert "instances_train2017.json" in msg and "instances_val2017.json" in msg and "give the one" in msg


def test_absolute_file_names_from_elsewhere_are_found_by_name(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    edit(ann, lambda d: d["images"][0].update(file_name="/home/someone/export/a.png"))
    assert read_detection_data(ann).images[0].path == (tmp_path / "d" / "a.png").absolute()


def test_images_folder_beside_json_and_one_json_of_any_name(candy, tmp_path):
    shutil.move(candy / "annotations.json", candy / "candy_coco.json")  # the one COCO *.json in the folder
    assert is_detection_data(candy)
    assert len(read_detection_data(candy)) == 6
    (candy / "notes.json").write_text('{"not": "coco"}')  # other JSON files do not count
    assert len(read_detection_data(candy)) == 6


def test_voc_folder_converts_one_based_corners_and_reads_missing_sizes(tmp_path):
    root = voc(tmp_path / "voc", [("b.jpg", 50, 40, [("dog", 1, 1, 10, 20), ("bird", 5, 6, 50, 40)]),
                                  ("a.jpg", 30, 20, [("cat", 11, 2, 20, 12)])])
    assert is_detection_data(root)
    d = read_detection_data(root)
    assert d.format == "voc" and not d.has_masks and d.classes == ("bird", "cat", "dog") and d.category_ids == (1, 2, 3)
    a, b = d.images  # XML files in name order; image ids are 1-based positions
    assert a.path == (root / "JPEGImages" / "a.jpg").absolute() and (a.image_id, b.image_id) == (1, 2)
    np.testing.assert_allclose(a.boxes, [[10, 1, 20, 12]])
    np.testing.assert_allclose(b.boxes, [[0, 0, 10, 20], [4, 5, 50, 40]])  # the "difficult" bird is kept
    assert b.labels.tolist() == [2, 0] and a.segmentations == () and d.counts() == {"bird": 1, "cat": 1, "dog": 1}
    no_size = voc(tmp_path / "voc2", [("a.jpg", 30, 20, [("cat", 1, 1, 30, 20)])], size=False)
    assert (read_detection_data(no_size).images[0].width, read_detection_data(no_size).images[0].height) == (30, 20)


def test_background_images_are_allowed(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10), ("b.png", 20, 10)],
               [{"image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5], "segmentation": [[1, 1, 6, 1, 6, 6]]}])
    d = read_detection_data(ann)
    bg = d.images[1]
    assert bg.boxes.shape == (0, 4) and bg.labels.shape == (0,) and bg.segmentations == ()
    assert d.has_masks and d.counts() == {"cat": 0, "dog": 1}


def test_boxes_within_a_pixel_are_clipped_silently(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [{"image_id": 1, "category_id": 1, "bbox": [-0.5, -1, 21, 11]}])
    logged = []
    d = read_detection_data(ann, log=logged.append)
    np.testing.assert_allclose(d.images[0].boxes, [[0, 0, 20, 10]])
    assert logged == [] and not d.has_masks and d.images[0].segmentations == ()


def test_crowd_annotations_are_left_out_with_one_line(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"image_id": 1, "category_id": 2, "bbox": [100, 1, 5, 5], "iscrowd": 1},  # bad box, but dropped first
        {"image_id": 1, "category_id": 2, "bbox": [2, 2, 5, 5], "iscrowd": 1}])
    logged = []
    d = read_detection_data(ann, log=logged.append)
    assert d.images[0].labels.tolist() == [0]
    assert len(logged) == 1 and "2 crowd annotations" in logged[0]


def test_masks_ignored_when_some_annotations_lack_them(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "segmentation": [[1, 1, 6, 1, 6, 6]]},
        {"image_id": 1, "category_id": 2, "bbox": [2, 2, 5, 5], "segmentation": []}])
    logged = []
    d = read_detection_data(ann, log=logged.append)
    assert not d.has_masks and d.images[0].segmentations == ()
    assert len(logged) == 1 and "masks are ignored" in logged[0] and "1 annotation of 2" in logged[0]


# --------------------------------------------------------------------------------------------- what is detection DATA


def test_is_detection_data_tells_the_kinds_apart(candy_master, tmp_path):
    assert is_detection_data(candy_master) and is_detection_data(str(candy_master / "annotations.json"))
    assert is_detection_data(voc(tmp_path / "voc", [("a.jpg", 8, 8, [("cat", 1, 1, 4, 4)])]))
    assert not is_detection_data(make_image_folder(tmp_path / "classes", per_class=1))
    (tmp_path / "data.csv").write_text("path,label\na.png,cat\n")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "other.json").write_text('{"images": 3, "annotations": []}')
    (tmp_path / "broken.json").write_text('{"images": [')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    for p in ("data.csv", "notes.txt", "list.json", "other.json", "broken.json", "binary.json", "missing"):
        assert not is_detection_data(tmp_path / p), p
    assert not is_detection_data(None) and not is_detection_data(12) and not is_detection_data("\0")
    # images and categories without annotations still look like COCO (the reader then says what is missing)
    (tmp_path / "noann.json").write_text('{"info": {"a": [1, {"b": "]"}]}, "categories": [], "images": []}')
    assert is_detection_data(tmp_path / "noann.json")


def test_missing_or_other_data_names_the_accepted_layouts(tmp_path):
    msg = error(read_detection_data, tmp_path / "nope")
    assert "does not exist" in msg and "COCO" in msg and "Annotations/*.xml" in msg
    msg = error(read_detection_data, make_image_folder(tmp_path / "classes", per_class=1))
    assert "not a detection dataset" in msg and "annotations.json" in msg
    (tmp_path / "x.csv").write_text("path,label\n")
    assert "not a detection dataset" in error(read_detection_data, tmp_path / "x.csv")


# --------------------------------------------------------------------------------------------- bad COCO input


def test_json_that_does_not_parse_names_file_line_and_column(tmp_path):
    bad = tmp_path / "annotations.json"
    bad.write_text('{"images": [],\n  "annotations": [}\n')
    msg = error(read_detection_data, tmp_path)
    assert str(bad) in msg and "line 2, column 19" in msg and "not valid JSON" in msg


def test_missing_keys_and_categories_problems(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [])
    edit(ann, lambda d: (d.pop("categories"), d.pop("annotations")))
    msg = error(read_detection_data, ann)
    assert str(ann) in msg and '"annotations" and "categories"' in msg
    ann = coco(tmp_path / "e", [("a.png", 20, 10)], [], cats=())
    assert "has no categories" in error(read_detection_data, ann)
    ann = coco(tmp_path / "f", [("a.png", 20, 10)], [], cats=("cat", "dog", "cat"))
    msg = error(read_detection_data, ann)
    assert "'cat' (ids 1, 3)" in msg and "more than one category" in msg
    ann = coco(tmp_path / "g", [], [])
    assert "has no images" in error(read_detection_data, ann)


def test_annotations_of_unknown_images_are_listed_then_skippable(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
                                                     {"image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    msg = error(read_detection_data, ann)
    assert str(ann) in msg and "annotation id 2 (image_id 7)" in msg and "--skip-bad" in msg
    logged = []
    d = read_detection_data(ann, skip_bad=True, log=logged.append)
    assert len(d.images[0].boxes) == 1 and len(logged) == 1 and "annotation id 2" in logged[0]


def test_unknown_category_ids_are_listed_with_the_known_ones_then_skippable(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [{"image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]},
                                                     {"image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]},
                                                     {"image_id": 1, "category_id": 0, "bbox": [1, 1, 5, 5]}])
    msg = error(read_detection_data, ann)
    for part in ("2 annotations", "annotation id 1 (category_id 9)", "annotation id 3 (category_id 0)",
                 "known ids: 1, 2", "--skip-bad"):
        assert part in msg
    logged = []
    d = read_detection_data(ann, skip_bad=True, log=logged.append)
    assert d.images[0].labels.tolist() == [1] and len(logged) == 1 and "2 annotations" in logged[0]


def test_missing_and_unreadable_images_are_listed_then_skipped_with_their_annotations(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10), ("b.png", 20, 10), ("c.png", 20, 10), ("d.png", 20, 10)],
               [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
                {"image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]},
                {"image_id": 2, "category_id": 2, "bbox": [2, 1, 5, 5]},
                {"image_id": 4, "category_id": 2, "bbox": [1, 1, 5, 5]}])
    (ann.parent / "b.png").unlink()
    (ann.parent / "c.png").write_text("not an image")
    msg = error(read_detection_data, ann)
    assert "2 images of 4" in msg and "b.png (missing)" in msg and "c.png (not an image)" in msg
    assert str(ann.parent) in msg and "--skip-bad" in msg
    logged = []
    d = read_detection_data(ann, skip_bad=True, log=logged.append)
    assert [im.path.name for im in d.images] == ["a.png", "d.png"] and d.counts() == {"cat": 1, "dog": 1}
    assert len(logged) == 1 and "2 images (and 2 annotations)" in logged[0]


def test_image_of_another_size_than_annotated_is_bad(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    edit(ann, lambda d: d["images"][0].update(width=10, height=20))
    assert "a.png (the annotations say 10x20, the file is 20x10)" in error(read_detection_data, ann)
    edit(ann, lambda d: (d["images"][0].pop("width"), d["images"][0].pop("height")))  # no size: the file's
    assert (read_detection_data(ann).images[0].width, read_detection_data(ann).images[0].height) == (20, 10)


def test_sideways_photo_is_annotated_at_its_upright_size(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 20x10, shown (and trained on) 10x20
    Image.new("RGB", (20, 10)).save(ann.parent / "p.jpg", exif=exif)
    edit(ann, lambda d: d["images"][0].update(file_name="p.jpg", width=10, height=20))
    assert (read_detection_data(ann).images[0].width, read_detection_data(ann).images[0].height) == (10, 20)
    edit(ann, lambda d: d["images"][0].update(width=20, height=10))
    assert "p.jpg (the annotations say 20x10, the file is 10x20)" in error(read_detection_data, ann)


def test_bad_boxes_are_listed_then_dropped_keeping_the_image(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 320, 256), ("b.png", 320, 256)],
               [{"image_id": 1, "category_id": 1, "bbox": [300, 10, 50, 20]},  # past the right edge
                {"image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 5]},  # no width
                {"image_id": 2, "category_id": 2, "bbox": [10, 10, 5, -5]},  # negative height
                {"image_id": 2, "category_id": 2, "bbox": [10, 10, 5]},  # malformed
                {"image_id": 2, "category_id": 2, "bbox": [10, 10, 5, 5]}])
    msg = error(read_detection_data, ann)
    assert "4 boxes" in msg and "--skip-bad" in msg
    assert "image a.png: box [300, 10, 50, 20] (annotation id 1): outside the 320x256 image" in msg
    assert "image a.png: box [10, 10, 0, 5] (annotation id 2): zero or negative width" in msg
    assert "(annotation id 3): zero or negative height" in msg and "(annotation id 4): not [x, y, w, h]" in msg
    logged = []
    d = read_detection_data(ann, skip_bad=True, log=logged.append)
    assert len(d) == 2 and d.images[0].boxes.shape == (0, 4) and d.images[1].labels.tolist() == [1]
    assert len(logged) == 1 and "4 bad boxes" in logged[0]


def test_long_listings_are_cut_after_five(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)],
               [{"image_id": 1, "category_id": 1, "bbox": [30 + i, 1, 5, 5]} for i in range(8)])
    msg = error(read_detection_data, ann)
    assert "8 boxes" in msg and "annotation id 5)" in msg and "annotation id 6)" not in msg and "... and 3 more" in msg


def test_no_images_left_after_skipping_is_an_error(tmp_path):
    ann = coco(tmp_path / "d", [("a.png", 20, 10)], [])
    (ann.parent / "a.png").unlink()
    assert "no images remain" in error(read_detection_data, ann, skip_bad=True, log=lambda m: None)


# --------------------------------------------------------------------------------------------- bad VOC input


def test_voc_bad_xml_missing_image_and_outside_box(tmp_path):
    root = voc(tmp_path / "voc", [("a.jpg", 30, 20, [("cat", 1, 1, 10, 10)]),
                                  ("b.jpg", 30, 20, [("cat", 1, 1, 10, 10)]),
                                  ("c.jpg", 30, 20, [("dog", 1, 1, 10, 10), ("dog", 5, 5, 40, 10)])])
    (root / "Annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename>")
    msg = error(read_detection_data, root)
    assert "a.xml" in msg and "does not parse" in msg and "--skip-bad" in msg
    (root / "JPEGImages" / "b.jpg").unlink()
    logged = []
    d = read_detection_data(root, skip_bad=True, log=logged.append)  # all three kinds dropped, one line each
    assert [im.path.name for im in d.images] == ["c.jpg"] and d.classes == ("dog",) and d.images[0].image_id == 3
    assert len(d.images[0].boxes) == 1 and len(logged) == 3
    assert "a.xml" in logged[0] and "b.jpg (missing)" in logged[1] and "object 2 of c.xml" in logged[2]
    (root / "Annotations" / "a.xml").unlink()  # without skip_bad each kind stops in turn: the missing image ...
    msg = error(read_detection_data, root)
    assert "b.jpg (missing)" in msg and "JPEGImages" in msg
    (root / "Annotations" / "b.xml").unlink()  # ... then the box outside
    msg = error(read_detection_data, root)
    assert "image c.jpg: box [5, 5, 40, 10] (object 2 of c.xml): outside the 30x20 image" in msg


# --------------------------------------------------------------------------------------------- split and identity


def test_split_images_is_seeded_and_keeps_every_class_in_train(tmp_path):
    images = [(f"{i}.png", 16, 16) for i in range(20)]
    anns = [{"image_id": i + 1, "category_id": 1, "bbox": [1, 1, 4, 4]} for i in range(18)]
    anns += [{"image_id": 19, "category_id": 2, "bbox": [1, 1, 4, 4]},
             {"image_id": 20, "category_id": 2, "bbox": [1, 1, 4, 4]},
             {"image_id": 20, "category_id": 3, "bbox": [1, 1, 4, 4]}]
    d = read_detection_data(coco(tmp_path / "d", images, anns, cats=("a", "b", "c")))
    for seed in range(30):
        tr, va = split_images(d, 0.5, seed)
        assert tr.dtype == va.dtype == np.int64 and len(va) == 10 and sorted([*tr, *va]) == list(range(20))
        in_train = {int(c) for i in tr for c in d.images[i].labels}
        assert in_train == {0, 1, 2}
        np.testing.assert_array_equal(split_images(d, 0.5, seed)[1], va)
    assert not np.array_equal(split_images(d, 0.5, 0)[1], split_images(d, 0.5, 1)[1])
    tr, va = split_images(d, 0.0, 0)
    assert len(tr) == 20 and len(va) == 0
    two = d.subset([18, 19])  # both hold class b: one must stay in train
    tr, va = split_images(two, 0.01, 0)
    assert len(tr) == 1 and len(va) == 1
    with pytest.raises(HeadstartError):
        split_images(d, 1.0, 0)


def test_fingerprint_follows_images_and_annotation_file(candy):
    d = read_detection_data(candy)
    assert d.fingerprint() == read_detection_data(candy).fingerprint()
    assert d.subset([0, 1]).fingerprint() != d.fingerprint() and len(d.subset(np.array([2]))) == 1
    edit(candy / "annotations.json", lambda doc: doc["annotations"][0]["bbox"].__setitem__(0, 137))
    assert read_detection_data(candy).fingerprint() != d.fingerprint()
