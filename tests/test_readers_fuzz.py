"""Property-based tests of the readers (hypothesis): whatever a file holds, reading it gives data or one
HeadstartError, never another exception. Image folders and CSVs, text CSV / JSONL, COCO and VOC
annotations, word-vector files, a run's headstart.json (finished, or stopped and resumed) and a card's
card.json."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from headstart.errors import HeadstartError  # noqa: E402

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# JSON values of any shape, and text that mixes the characters files are made of
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True) |
                    st.text(max_size=20), lambda children: st.lists(children, max_size=5) |
                    st.dictionaries(st.text(max_size=12), children, max_size=6), max_leaves=25)
PIECES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8) | \
    st.sampled_from([",", "\"", "\t", " ", "{", "}", ":", "0.5", "-1", "nan", "label", "text", "path", "a.png", "\\"])
LINES = st.lists(st.lists(PIECES, max_size=8).map("".join), max_size=12)


def only_one_line_errors(read, *args, **kwargs) -> None:
    try:
        read(*args, **kwargs)
    except HeadstartError as e:
        assert "\n" not in str(e).strip() and str(e).strip()


@pytest.fixture(scope="module")
def scratch():
    d = Path(tempfile.mkdtemp(prefix="headstart-fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@FUZZ
@given(lines=LINES, raw=st.binary(max_size=200), use_raw=st.booleans(), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_text_tables(scratch, lines, raw, use_raw, suffix):
    from headstart.data.texts import read_text_data

    path = scratch / f"texts{suffix}"
    path.write_bytes(raw if use_raw else "\n".join(lines).encode())
    only_one_line_errors(read_text_data, path)


@FUZZ
@given(lines=LINES, header=st.sampled_from(["path,label", "label,path", "path", "", "file,class"]))
def test_image_csvs(scratch, lines, header):
    from headstart.data.images import read_image_data

    path = scratch / "images.csv"
    path.write_text("\n".join([header, *lines]))
    only_one_line_errors(read_image_data, path)


def _image_bytes(kind: str, cut: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA" if kind == "png" else "L", (9, 7), 120).save(buf, format="PNG" if kind == "png" else "JPEG")
    data = buf.getvalue()
    return data[: max(1, len(data) - cut)] if cut else data


NAMES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="/\x00"),
                min_size=1, max_size=10).filter(lambda n: n not in (".", ".."))
FILES = st.tuples(NAMES, st.sampled_from([".png", ".jpg", ".jpeg", ".txt", ""]),
                  st.sampled_from(["png", "jpeg", "raw"]), st.integers(0, 40), st.binary(max_size=60))


@FUZZ
@given(classes=st.lists(st.tuples(NAMES, st.lists(FILES, max_size=4)), max_size=4), skip=st.booleans())
def test_image_folders(scratch, classes, skip):
    """Folders of any names (newlines and spaces included) holding images whole, cut short, or bytes of
    anything: the image reader and the check of every file give samples or one line."""
    from headstart.data.images import drop_bad_images, read_image_data

    root = scratch / "folder-fuzz"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for name, files in classes:
        folder = root / name
        folder.mkdir(exist_ok=True)
        for stem, suffix, kind, cut, raw in files:
            (folder / f"{stem}{suffix}").write_bytes(raw if kind == "raw" else _image_bytes(kind, cut))

    def read() -> None:
        drop_bad_images(read_image_data(root), skip_bad_files=skip)

    only_one_line_errors(read)


@pytest.fixture(scope="module")
def coco(scratch) -> Path:
    from headstart.detection.synthetic import write_candy

    return write_candy(scratch / "candy", n_images=2, seed=0)


@FUZZ
@given(value=JSON, where=st.sampled_from(["images", "annotations", "categories", "top", "bbox", "image"]))
def test_coco_annotations(coco, scratch, value, where):
    from headstart.detection.data import read_detection_data

    doc = json.loads((coco / "annotations.json").read_text())
    if where == "top":
        doc = value
    elif where == "bbox":
        doc["annotations"][0]["bbox"] = value
    elif where == "image":
        doc["images"][0]["width"] = value
    else:
        doc[where] = value
    folder = scratch / "coco-fuzz"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(coco, folder)
    (folder / "annotations.json").write_text(json.dumps(doc))
    only_one_line_errors(read_detection_data, folder, log=lambda s: None)


@FUZZ
@given(xml=st.sampled_from([
    "<annotation><object><name>{v}</name><bndbox><xmin>{v}</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
    "</object><size><width>8</width><height>8</height></size><filename>a.png</filename></annotation>",
    "<annotation><object><name>a</name></object>{v}</annotation>", "{v}"]), v=st.text(max_size=30))
def test_voc_annotations(coco, scratch, xml, v):
    from headstart.detection.data import read_detection_data

    folder = scratch / "voc-fuzz"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "Annotations").mkdir(parents=True)
    (folder / "JPEGImages").mkdir()
    shutil.copy(next((coco / "images").iterdir()), folder / "JPEGImages" / "a.png")
    (folder / "Annotations" / "a.xml").write_text(xml.replace("{v}", v))
    only_one_line_errors(read_detection_data, folder, log=lambda s: None)


@FUZZ
@given(lines=LINES, raw=st.binary(max_size=300), use_raw=st.booleans(), header=st.sampled_from(["", "3 2\n", "2 5\n"]))
def test_word_vector_files(scratch, lines, raw, use_raw, header):
    from headstart.text.vectors import read_vectors_file

    path = scratch / "vectors.txt"
    path.write_bytes(raw if use_raw else (header + "\n".join(lines)).encode())
    only_one_line_errors(read_vectors_file, path)


@pytest.fixture(scope="module")
def a_run(scratch, tiny_weights, shapes_dir) -> Path:
    import headstart

    return headstart.fit(shapes_dir, model=f"file:{tiny_weights}", arch="timm:test_efficientnet",
                         out=scratch / "run", strategy="linear-probe", cache_dir=scratch / "cache").dir


@FUZZ
@given(value=JSON, key=st.sampled_from(["card", "head", "classes", "body_id", "files", "task", "preprocessing"]))
def test_run_records(a_run, scratch, value, key):
    import headstart

    run = scratch / "run-fuzz"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(a_run, run)
    info = json.loads((run / "headstart.json").read_text())
    info[key] = value
    (run / "headstart.json").write_text(json.dumps(info))
    only_one_line_errors(headstart.load, run)


class Started(HeadstartError):
    """--resume got as far as training: the record was read whole."""


@FUZZ
@given(value=JSON, key=st.sampled_from(["config", "data", "card", "head", "classes", "task", "spec", "status"]),
       inner=st.sampled_from(["", "epochs", "lr", "batch_size", "seed", "strategy", "source", "fingerprint", "n"]))
def test_stopped_run_records(stopped_run, scratch, monkeypatch, value, key, inner):
    import headstart
    from headstart.engine import Engine

    def started(self):
        raise Started("started")

    monkeypatch.setattr(Engine, "run", started)
    run = scratch / "stopped-fuzz"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(stopped_run, run)
    info = json.loads((run / "headstart.json").read_text())
    if inner and isinstance(info.get(key), dict):
        info[key][inner] = value
    else:
        info[key] = value
    (run / "headstart.json").write_text(json.dumps(info))
    only_one_line_errors(headstart.resume, run)


@FUZZ
@given(value=JSON, key=st.sampled_from(["card", "format", "name", "architecture", "weights", "preprocessing"]))
def test_card_files(scratch, tiny_weights, value, key):
    from headstart.zoo.user import read_card_folder

    folder = scratch / "card-fuzz"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    shutil.copy(tiny_weights, folder / "model.safetensors")
    record = {"format": "headstart-card/1", "card": {"name": "x", "modality": "image", "architecture": "timm:x",
                                                      "weights": {"kind": "file", "location": "model.safetensors"}}}
    if key in ("card", "format"):
        record[key] = value
    else:
        record["card"][key] = value
    (folder / "card.json").write_text(json.dumps(record))
    only_one_line_errors(read_card_folder, folder)
