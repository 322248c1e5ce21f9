"""Detection DATA: COCO JSON (boxes, optionally masks) or a Pascal VOC folder (boxes).

Like image classification DATA (data/images.py), everything about the user's files is checked
before any work starts, and each kind of problem is reported at once in one HeadstartError line
that names the file and the fix: a JSON that does not parse, annotations pointing at unknown
images or categories, image files that are missing or unreadable (or whose size differs from the
annotation's), and boxes outside their image or without area. `skip_bad` drops what can be
dropped (bad images with their annotations, bad boxes, annotations with unknown ids) and logs one
line per kind, so a large dataset with a few broken entries can still be used.

Accepted layouts (`is_detection_data` says whether DATA is one of them, and never raises):

    x.json                                   a COCO file: "images", "annotations", "categories"
    folder/annotations.json                  (or the one COCO *.json in folder/ or folder/annotations/)
    folder/Annotations/*.xml + JPEGImages/   Pascal VOC

COCO `file_name`s are looked up next to the JSON, in its images/ folder, in the images/ folder
beside it, and in the folder beside it named after the JSON (annotations/instances_train2017.json
-> train2017/), as COCO itself ships.

Boxes are x0 y0 x1 y1 in pixels (VOC's 1-based inclusive corners are converted); labels are
0-based indices into `classes`, background is not a class. iscrowd=1 annotations are left out of
the training boxes, as torchvision's COCO reference does.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import check_image, files_fingerprint
from ..errors import HeadstartError, plural

SKIP_FLAG = "--skip-bad"
COCO_FILE = "annotations.json"
COCO_KEYS = ("images", "annotations", "categories")
LAYOUTS = ('a COCO JSON file (with "images", "annotations" and "categories"), a folder holding annotations.json '
           "(or annotations/instances_*.json), or a Pascal VOC folder (Annotations/*.xml + JPEGImages/)")
BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image before it counts as outside (it is clipped)
SHOWN = 5  # problems listed in one message before "... and N more"


@dataclass(frozen=True)
class DetectionImage:
    """One image and its objects: boxes[i] (x0 y0 x1 y1 pixels) has class labels[i]."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (n, 4) float32
    labels: np.ndarray  # (n,) int64, index into DetectionData.classes
    segmentations: tuple  # per box: COCO polygons (list) or RLE (dict) or None; () when the data has no masks
    image_id: int


@dataclass(frozen=True)
class DetectionData:
    """Images with boxes (and masks when has_masks), classes in the order of the COCO category ids."""

    modality = "detection"  # not a field, as ImageSamples.modality

    images: tuple[DetectionImage, ...]
    classes: tuple[str, ...]
    category_ids: tuple[int, ...]
    source: str
    format: str  # "coco" | "voc"
    has_masks: bool
    annotations_sha256: str = field(default="", repr=False)  # digest of the annotation file(s) as read

    def __len__(self) -> int:
        return len(self.images)

    def counts(self) -> dict[str, int]:
        """Boxes per class name (every class, 0 included)."""
        n = np.zeros(len(self.classes), dtype=np.int64)
        for im in self.images:
            n += np.bincount(im.labels, minlength=len(self.classes))[: len(self.classes)]
        return {c: int(k) for c, k in zip(self.classes, n)}

    def fingerprint(self) -> str:
        """Identity of the data: each image file's path, size and modification time, in order, and the
        bytes of the annotation file(s) they were read with (editing a box changes it)."""
        h = hashlib.sha256(files_fingerprint([im.path for im in self.images]).encode())
        h.update(f"\0{self.format}\0{self.annotations_sha256}".encode())
        return h.hexdigest()

    def subset(self, idx: Sequence[int] | np.ndarray) -> DetectionData:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        return replace(self, images=tuple(self.images[i] for i in idx))


# --------------------------------------------------------------------------------------------- what DATA is

def is_detection_data(data: object) -> bool:
    """Whether DATA looks like a detection dataset in one of the accepted layouts (never raises)."""
    try:
        p = Path(data).expanduser()  # type: ignore[arg-type]
        if p.is_file():
            return p.suffix.lower() == ".json" and _looks_like_coco(p)
        return p.is_dir() and (_find_coco_json(p, strict=False) is not None or _is_voc(p))
    except Exception:  # noqa: BLE001 - a guess about any input must not fail
        return False


def _is_voc(folder: Path) -> bool:
    ann = folder / "Annotations"
    return ann.is_dir() and any(_voc_xmls(ann))


def _voc_xmls(ann: Path) -> list[Path]:
    return sorted(p for p in ann.iterdir() if p.suffix.lower() == ".xml" and not p.name.startswith(".") and p.is_file())


def _find_coco_json(folder: Path, strict: bool = True) -> Path | None:
    """folder/annotations.json, else the one COCO-looking *.json in folder/ or folder/annotations/.
    Several of them: an error (strict) or the first (for is_detection_data)."""
    if (folder / COCO_FILE).is_file():
        return folder / COCO_FILE
    found: list[Path] = []
    for d in (folder, folder / "annotations"):
        if d.is_dir():
            found += sorted(p for p in d.iterdir() if p.suffix.lower() == ".json" and not p.name.startswith(".")
                            and p.is_file() and _looks_like_coco(p))
    if len(found) > 1 and strict:
        raise HeadstartError(
            f"DATA folder '{folder}' holds {len(found)} COCO annotation files ({_listing([p.name for p in found])}); "
            "give the one to use as DATA (e.g. DATA=" + str(found[0]) + ")"
        )
    return found[0] if found else None


# Reading the keys of a JSON's top-level object without parsing it: at depth 1 every token counts
# (a key is a string followed by ':'); deeper, one regex match skips strings, scalars and whole flat
# containers (COCO's image entries), so Python only sees the brackets of nested ones. Possessive
# quantifiers (Python 3.11+) keep a failed match linear.
_STRING = rb'"(?:[^"\\]++|\\.)*+"'
_FLAT = rb'(?:[^"{}\[\]]++|' + _STRING + rb')*+'
_TOKEN = re.compile(rb'\s*(' + _STRING + rb'|[{}\[\]:,]|[^\s"{}\[\]:,]+)')
_SKIP = re.compile(rb'(?:[^"{}\[\]]++|' + _STRING + rb'|\{' + _FLAT + rb'\}|\[' + _FLAT + rb'\])*+')
_CHUNK = 1 << 20


def _top_level_lists(path: Path, enough: Callable[[set[str]], bool]) -> set[str]:
    """Keys of the JSON file's top-level object whose value is a list, read until enough(keys)."""
    keys: set[str] = set()
    with open(path, "rb") as f:
        buf = f.read(_CHUNK)
        while True:  # the first thing but a byte-order mark or white space must be '{'
            buf = buf.removeprefix(b"\xef\xbb\xbf").lstrip()
            more = f.read(_CHUNK) if len(buf) < 3 else b""
            if not more:
                break
            buf += more
        if not buf.startswith(b"{"):
            return keys
        pos, depth, last, key, eof = 1, 1, None, None, False
        while True:
            if depth == 1:
                m = _TOKEN.match(buf, pos)
                complete = m is not None and (m.end() < len(buf) or eof or m.group(1)[:1] in b'"{}[]:,')
            else:
                m = _SKIP.match(buf, pos)
                complete = m.end() < len(buf) and buf[m.end():m.end() + 1] != b'"'
            if not complete:  # the token runs past the buffer: read on
                if depth > 1:
                    pos = m.end()  # what the skip passed over is done with
                if eof:
                    return keys
                more = f.read(_CHUNK)
                eof = not more
                buf, pos = buf[pos:] + more, 0
                continue
            if depth > 1:
                pos = m.end() + 1
                depth += 1 if buf[m.end()] in b"[{" else -1
                continue
            tok, pos = m.group(1), m.end()
            if tok in (b"[", b"{"):
                if key is not None and tok == b"[":
                    keys.add(key)
                    if enough(keys):
                        return keys
                depth, last, key = depth + 1, None, None
            elif tok in (b"]", b"}"):
                return keys  # the top-level object ended
            elif tok == b":":
                key, last = last, None
            elif tok.startswith(b'"') and key is None:
                last = tok[1:-1].decode("utf-8", "replace")
            else:  # ',' or a scalar value
                last, key = None, None


def _looks_like_coco(path: Path) -> bool:
    def enough(keys: set[str]) -> bool:
        return "images" in keys and ("annotations" in keys or "categories" in keys)
    try:
        return enough(_top_level_lists(path, enough))
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------------- reading

@dataclass
class _Img:
    """An image entry being checked: where its file is, the size the annotations give (0 = unknown)."""
    name: str  # as the annotations spell it, for messages
    candidates: list[Path]
    width: int
    height: int
    image_id: int
    path: Path | None = None


@dataclass
class _Obj:
    """An annotated object being checked; box is x0 y0 x1 y1 (None when the entry is malformed)."""
    img: int  # index into the image list
    label: object  # COCO category id, or VOC class name
    box: tuple[float, float, float, float] | None
    shown: str  # the box as the file gives it, e.g. "[10, 20, 30, 40]"
    ref: str  # "annotation id 7", "object 2 of a.xml"
    bad: str = ""  # why the box is malformed
    seg: object = None


def read_detection_data(data: str | os.PathLike, skip_bad: bool = False, log: Callable[[str], object] = print
                        ) -> DetectionData:
    """Read and check DATA (see the module docstring for the layouts); any problem stops with all of its
    kind listed, unless skip_bad drops the offending images, boxes or annotations (and logs how many)."""
    log = log or (lambda _msg: None)
    root = Path(data).expanduser()
    if not root.exists():
        raise HeadstartError(f"DATA '{data}' does not exist; give {LAYOUTS}")
    if root.is_file():
        if root.suffix.lower() != ".json":
            raise HeadstartError(f"DATA '{data}' is not a detection dataset; give {LAYOUTS}")
        return _read_coco(root, str(data), skip_bad, log)
    coco = _find_coco_json(root)
    if coco is not None:
        return _read_coco(coco, str(data), skip_bad, log)
    if (root / "Annotations").is_dir():
        return _read_voc(root, str(data), skip_bad, log)
    raise HeadstartError(f"DATA folder '{data}' is not a detection dataset (no annotations.json, "
                         f"annotations/*.json or Annotations/*.xml); give {LAYOUTS}")


def _read_coco(path: Path, source: str, skip_bad: bool, log: Callable[[str], object]) -> DetectionData:
    where = f"COCO file '{path}'"
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise HeadstartError(f"{where} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except json.JSONDecodeError as e:
        raise HeadstartError(f"{where} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}; "
                             "fix the file (a truncated download or a hand edit?)") from None
    if not isinstance(doc, dict):
        raise HeadstartError(f'{where} holds a JSON {type(doc).__name__}, not an object with "images", '
                             '"annotations" and "categories" lists; give a COCO detection file')
    missing = [k for k in COCO_KEYS if not isinstance(doc.get(k), list)]
    if missing:
        raise HeadstartError(f"{where} lacks the {_quoted(missing)} {'list' if len(missing) == 1 else 'lists'}; "
                             'a COCO detection file has "images", "annotations" and "categories" lists')
    classes, cat_ids = _coco_categories(where, doc["categories"])
    imgs = _coco_images(where, path, doc["images"])
    by_id = {im.image_id: k for k, im in enumerate(imgs)}

    not_dict = [i for i, a in enumerate(doc["annotations"]) if not isinstance(a, dict)]
    if not_dict:
        raise HeadstartError(f'{where}: {plural(len(not_dict), "entry", "entries")} of "annotations" '
                             f"{'is not an object' if len(not_dict) == 1 else 'are not objects'} "
                             f"(positions {_listing(not_dict)}); each annotation is "
                             '{"id", "image_id", "category_id", "bbox": [x, y, w, h]}')
    refs = [f"annotation id {a['id']}" if "id" in a else f"annotation #{k + 1}"  # for messages
            for k, a in enumerate(doc["annotations"])]
    anns = list(enumerate(doc["annotations"]))  # (position in the file, annotation), filtered below
    crowd = [k for k, a in anns if a.get("iscrowd") in (1, True, "1")]
    if crowd:
        log(f"{where}: leaving out {plural(len(crowd), 'crowd annotation')} (iscrowd=1) from the training boxes, "
            "as COCO training does")
        crowd_set = set(crowd)
        anns = [(k, a) for k, a in anns if k not in crowd_set]

    orphans = [(k, a) for k, a in anns if _hashable(a.get("image_id")) not in by_id]
    if orphans:
        shown = [f"{refs[k]} (image_id {a.get('image_id')!r})" for k, a in orphans]
        one = len(orphans) == 1
        if not skip_bad:
            raise HeadstartError(f'{where}: {plural(len(orphans), "annotation")} {"refers" if one else "refer"} to '
                                 f'image ids not in "images": {_listing(shown)}; fix the image ids, or pass '
                                 f"{SKIP_FLAG} to drop {'that annotation' if one else 'those annotations'}")
        log(f"{where}: dropping {plural(len(orphans), 'annotation')} whose image id is not in \"images\": "
            f"{_listing(shown)}")
        drop = {k for k, _ in orphans}
        anns = [(k, a) for k, a in anns if k not in drop]

    known = set(cat_ids)
    unknown = [(k, a) for k, a in anns if _hashable(a.get("category_id")) not in known]
    if unknown:
        shown = [f"{refs[k]} (category_id {a.get('category_id')!r})" for k, a in unknown]
        one = len(unknown) == 1
        if not skip_bad:
            raise HeadstartError(f'{where}: {plural(len(unknown), "annotation")} {"has" if one else "have"} a '
                                 f'category_id not in "categories" (known ids: {_listing(sorted(known), 20)}): '
                                 f"{_listing(shown)}; fix the ids or add the categories, or pass {SKIP_FLAG} to "
                                 f"drop {'that annotation' if one else 'those annotations'}")
        log(f"{where}: dropping {plural(len(unknown), 'annotation')} with a category_id not in \"categories\": "
            f"{_listing(shown)}")
        drop = {k for k, _ in unknown}
        anns = [(k, a) for k, a in anns if k not in drop]

    objs = []
    for k, a in anns:
        box, shown, bad = _coco_box(a.get("bbox"))
        objs.append(_Obj(img=by_id[a["image_id"]], label=a["category_id"], box=box, shown=shown, ref=refs[k],
                         bad=bad, seg=a.get("segmentation")))
    keep_imgs, objs = _check_files(where, imgs, objs, skip_bad, log, what="annotations")
    objs = _check_boxes(where, imgs, objs, skip_bad, log)

    segs = [_clean_segmentation(o.seg, imgs[o.img].width, imgs[o.img].height) for o in objs]
    lacking = sum(s is None for s in segs)
    has_masks = bool(objs) and lacking == 0
    if objs and 0 < lacking < len(objs):
        log(f"{where}: masks are ignored (boxes only) because {plural(lacking, 'annotation')} of {len(objs)} "
            f"{'lacks' if lacking == 1 else 'lack'} a usable segmentation")
    index = {c: i for i, c in enumerate(cat_ids)}
    images = _assemble(imgs, keep_imgs, objs, lambda o: index[o.label], segs if has_masks else None)
    return DetectionData(images=images, classes=classes, category_ids=cat_ids, source=source, format="coco",
                         has_masks=has_masks, annotations_sha256=digest)


def _coco_categories(where: str, cats: list) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if not cats:
        raise HeadstartError(f'{where} has no categories; add one entry per class to "categories", '
                             'e.g. {"id": 1, "name": "cat"}')
    bad = [i for i, c in enumerate(cats) if not (isinstance(c, dict) and _is_int(c.get("id"))
                                                 and isinstance(c.get("name"), str) and c["name"].strip())]
    if bad:
        raise HeadstartError(f'{where}: {plural(len(bad), "entry", "entries")} of "categories" (positions '
                             f'{_listing(bad)}) lack an integer "id" or a "name"; each category is '
                             '{"id": 1, "name": "cat"}')
    cats = sorted(cats, key=lambda c: c["id"])
    dup_ids = sorted(i for i, n in Counter(c["id"] for c in cats).items() if n > 1)
    if dup_ids:
        raise HeadstartError(f'{where}: category ids {_listing(dup_ids)} are used by more than one category; '
                             "give each category its own id")
    names = Counter(c["name"] for c in cats)
    dups = [f"'{n}' (ids {', '.join(str(c['id']) for c in cats if c['name'] == n)})" for n, k in names.items() if k > 1]
    if dups:
        raise HeadstartError(f"{where}: category names {_listing(dups)} are used by more than one category; "
                             "merge them (relabel their annotations to one id) or rename them")
    return tuple(c["name"] for c in cats), tuple(int(c["id"]) for c in cats)


def _coco_images(where: str, path: Path, entries: list) -> list[_Img]:
    if not entries:
        raise HeadstartError(f'{where} has no images; list them in "images" as '
                             '{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}')

    def ok(e: object) -> bool:
        return (isinstance(e, dict) and _is_int(e.get("id")) and isinstance(e.get("file_name"), str) and e["file_name"]
                and all(e.get(k) is None or (_is_int(e[k]) and e[k] > 0) for k in ("width", "height")))
    bad = [i for i, e in enumerate(entries) if not ok(e)]
    if bad:
        raise HeadstartError(f'{where}: {plural(len(bad), "entry", "entries")} of "images" (positions {_listing(bad)}) '
                             'lack an integer "id" or a "file_name", or have a width or height that is not a positive '
                             'integer; each image is {"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}')
    dup = sorted(i for i, n in Counter(e["id"] for e in entries).items() if n > 1)
    if dup:
        raise HeadstartError(f"{where}: image ids {_listing(dup)} are used by more than one image; give each image "
                             "its own id")
    bases = _image_dirs(path)
    out = []
    for e in entries:
        name = e["file_name"]
        # an absolute path (from the machine that made the file) is also looked for by its name, here
        cands = [Path(name), *(b / Path(name).name for b in bases)] if os.path.isabs(name) else [b / name for b in bases]
        out.append(_Img(name=name, candidates=cands, width=int(e.get("width") or 0), height=int(e.get("height") or 0),
                        image_id=int(e["id"])))
    return out


def _image_dirs(json_path: Path) -> list[Path]:
    """Where COCO file_names are looked up, in order (folders that do not exist are left out)."""
    d = json_path.parent
    stem = json_path.stem.removeprefix("instances_")
    dirs = [d, d / "images", d.parent / "images", d.parent / stem, d.parent]
    out: list[Path] = []
    for p in dirs:
        if p not in out and p.is_dir():
            out.append(p)
    return out or [d]


def _coco_box(bbox: object) -> tuple[tuple[float, float, float, float] | None, str, str]:
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_num(v) for v in bbox)):
        return None, repr(bbox), "not [x, y, w, h] (4 numbers)"
    x, y, w, h = (float(v) for v in bbox)
    return (x, y, x + w, y + h), "[" + ", ".join(_num(v) for v in bbox) + "]", ""


def _clean_segmentation(seg: object, width: int, height: int) -> object:
    """The segmentation as a usable COCO mask (polygons of 3+ points, or an RLE of the image's size), else None."""
    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
        return polys or None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if isinstance(size, (list, tuple)) and list(size) == [height, width] and isinstance(counts, (str, list)) \
                and counts:
            return seg
    return None


def _read_voc(root: Path, source: str, skip_bad: bool, log: Callable[[str], object]) -> DetectionData:
    where = f"VOC folder '{root}'"
    xmls = _voc_xmls(root / "Annotations")
    if not xmls:
        raise HeadstartError(f"{where}: Annotations/ holds no .xml files; put one Pascal VOC XML per image there")
    jpegs = root / "JPEGImages"
    h = hashlib.sha256()
    imgs: list[_Img] = []
    objs: list[_Obj] = []
    unparsable: list[str] = []
    for k, x in enumerate(xmls, start=1):
        raw = x.read_bytes()
        h.update(f"{x.name}\0{len(raw)}\0".encode() + raw)
        try:
            doc = ET.fromstring(raw)
        except ET.ParseError as e:
            unparsable.append(f"{x.name} ({e})")
            continue
        name = (doc.findtext("filename") or "").strip()
        cands = [jpegs / name] if name else []
        if not name or not Path(name).suffix:
            stem = name or x.stem
            cands += [jpegs / (stem + ext) for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")]
        w, hh = _voc_int(doc.findtext("size/width")), _voc_int(doc.findtext("size/height"))
        imgs.append(_Img(name=name or x.stem, candidates=cands, width=w, height=hh, image_id=k))
        for j, ob in enumerate(doc.findall("object"), start=1):
            label = (ob.findtext("name") or "").strip()
            corners = [ob.findtext(f"bndbox/{c}") for c in ("xmin", "ymin", "xmax", "ymax")]
            shown = "[" + ", ".join(str(c).strip() if c is not None else "?" for c in corners) + "]"
            vals = [_float(c) for c in corners]
            bad = ""
            if not label:
                bad = "the object has no <name>"
            elif any(v is None for v in vals):
                bad = "<bndbox> lacks numeric xmin, ymin, xmax, ymax"
            box = None if bad else (vals[0] - 1, vals[1] - 1, vals[2], vals[3])  # 1-based inclusive -> pixel edges
            objs.append(_Obj(img=len(imgs) - 1, label=label, box=box, shown=shown, ref=f"object {j} of {x.name}",
                             bad=bad))
    if unparsable:
        one, listing = len(unparsable) == 1, _listing(unparsable, sep="; ")
        if not skip_bad:
            raise HeadstartError(f"{where}: {plural(len(unparsable), 'XML file')} in Annotations/ "
                                 f"{'does' if one else 'do'} not parse: {listing}; fix {'it' if one else 'them'}, "
                                 f"or pass {SKIP_FLAG} to leave {'that image' if one else 'those images'} out")
        log(f"{where}: leaving out {plural(len(unparsable), 'image')} whose XML does not parse: {listing}")
    if not imgs:
        raise HeadstartError(f"{where}: no XML file in Annotations/ could be read; fix them")
    keep_imgs, objs = _check_files(where, imgs, objs, skip_bad, log, what="objects", looked_in=jpegs)
    objs = _check_boxes(where, imgs, objs, skip_bad, log)
    classes = tuple(sorted({str(o.label) for o in objs}))
    if not classes:
        raise HeadstartError(f"{where}: no XML file has an <object>; annotate at least one object with "
                             "<object><name>…</name><bndbox>…</bndbox></object>")
    index = {c: i for i, c in enumerate(classes)}
    images = _assemble(imgs, keep_imgs, objs, lambda o: index[o.label], None)
    return DetectionData(images=images, classes=classes, category_ids=tuple(range(1, len(classes) + 1)), source=source,
                         format="voc", has_masks=False, annotations_sha256=h.hexdigest())


# --------------------------------------------------------------------------------------------- checks shared by both

def _inspect(path: Path) -> tuple[str | None, tuple[int, int]]:
    """Why the file is not a readable image (or None), and its size as training sees it (EXIF-rotated)."""
    why = check_image(path)
    if why is not None:
        return why, (0, 0)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # stored sideways: the loader turns it upright
                w, h = h, w
        return None, (w, h)
    except Exception as e:  # noqa: BLE001 - a broken EXIF block makes the image unreadable to the loader too
        return str(e).split("\n")[0][:80] or type(e).__name__, (0, 0)


def _check_files(where: str, imgs: list[_Img], objs: list[_Obj], skip_bad: bool, log: Callable[[str], object],
                 what: str, looked_in: Path | None = None) -> tuple[list[int], list[_Obj]]:
    """Find each image's file, check that it is a readable image of the size the annotations give (and
    fill in the size where they give none). Bad images stop with all of them listed, or are dropped
    with their objects under skip_bad. Returns the kept image indices and their objects."""
    problems: dict[int, str] = {}
    present: list[int] = []
    for k, im in enumerate(imgs):
        im.path = next((c for c in im.candidates if c.is_file()), None)
        if im.path is None:
            problems[k] = "missing"
        else:
            present.append(k)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = list(pool.map(lambda k: _inspect(imgs[k].path), present))
    for k, (why, (w, h)) in zip(present, results):
        im = imgs[k]
        if why is not None:
            problems[k] = why
        elif (im.width or w, im.height or h) != (w, h):
            problems[k] = f"the annotations say {im.width}x{im.height}, the file is {w}x{h}"
        else:
            im.width, im.height = w, h
    if not problems:
        return list(range(len(imgs))), objs
    bad = sorted(problems)
    listing = _listing([f"{imgs[k].name} ({problems[k]})" for k in bad], sep="; ")
    n_missing = sum(problems[k] == "missing" for k in bad)
    dirs = sorted({str(c.parent) for k in bad if problems[k] == "missing" for c in imgs[k].candidates})
    looked = (f"; image files are looked for in {looked_in or ', '.join(dirs[:4])}" if n_missing else "")
    one = len(bad) == 1
    if not skip_bad:
        raise HeadstartError(f"{where}: {plural(len(bad), 'image')} of {len(imgs)} {'is' if one else 'are'} missing, "
                             f"unreadable or of another size than annotated: {listing}{looked}; fix or "
                             f"remove {'it' if one else 'them'}, or pass {SKIP_FLAG} to leave "
                             f"{'that image' if one else 'those images'} (and {'its' if one else 'their'} {what}) out")
    drop = set(bad)
    kept_objs = [o for o in objs if o.img not in drop]
    log(f"{where}: leaving out {plural(len(bad), 'image')} (and {plural(len(objs) - len(kept_objs), what[:-1])}) "
        f"that {'is' if one else 'are'} missing, unreadable or of another size than annotated: {listing}")
    keep = [k for k in range(len(imgs)) if k not in drop]
    if not keep:
        raise HeadstartError(f"{where}: no images remain after leaving out the missing or unreadable ones; "
                             "fix the image files")
    return keep, kept_objs


def _check_boxes(where: str, imgs: list[_Img], objs: list[_Obj], skip_bad: bool, log: Callable[[str], object]
                 ) -> list[_Obj]:
    """Clip boxes that stick out of their image by at most BOX_TOLERANCE; stop on (or, with skip_bad,
    drop) boxes further out, without area, or malformed, listing them all."""
    kept, bad = [], []
    for o in objs:
        im = imgs[o.img]
        why = o.bad or _box_problem(o.box, im.width, im.height)
        if why:
            bad.append(f"image {im.name}: box {o.shown} ({o.ref}): {why}")
            continue
        x0, y0, x1, y1 = o.box  # type: ignore[misc]
        o.box = (min(max(x0, 0.0), im.width), min(max(y0, 0.0), im.height),
                 min(max(x1, 0.0), im.width), min(max(y1, 0.0), im.height))
        kept.append(o)
    if bad:
        one, listing = len(bad) == 1, _listing(bad, sep="; ")
        if not skip_bad:
            raise HeadstartError(f"{where}: {plural(len(bad), 'box', 'boxes')} {'is' if one else 'are'} outside "
                                 f"{'its' if one else 'their'} image, without area or malformed: {listing}; fix "
                                 f"{'it' if one else 'them'}, or pass {SKIP_FLAG} to drop "
                                 f"{'that box' if one else 'those boxes'} (the images stay)")
        log(f"{where}: dropping {plural(len(bad), 'bad box', 'bad boxes')} (the images stay): {listing}")
    return kept


def _box_problem(box: tuple[float, float, float, float] | None, width: int, height: int) -> str:
    x0, y0, x1, y1 = box  # type: ignore[misc]
    if not all(math.isfinite(v) for v in box):  # type: ignore[union-attr]
        return "not finite"
    thin = [s for s, d in (("width", x1 - x0), ("height", y1 - y0)) if d <= 0]
    if thin:
        return f"zero or negative {' and '.join(thin)}"
    t = BOX_TOLERANCE
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t or x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0:
        return f"outside the {width}x{height} image"
    return ""


def _assemble(imgs: list[_Img], keep: list[int], objs: list[_Obj], label_of: Callable[[_Obj], int],
              segs: list | None) -> tuple[DetectionImage, ...]:
    per: dict[int, list[int]] = {k: [] for k in keep}
    for j, o in enumerate(objs):
        per[o.img].append(j)
    out = []
    for k in keep:
        im, js = imgs[k], per[k]
        out.append(DetectionImage(
            path=Path(os.path.abspath(im.path)), width=im.width, height=im.height,  # type: ignore[arg-type]
            boxes=np.array([objs[j].box for j in js], dtype=np.float32).reshape(-1, 4),
            labels=np.array([label_of(objs[j]) for j in js], dtype=np.int64),
            segmentations=tuple(segs[j] for j in js) if segs is not None else (),
            image_id=im.image_id))
    return tuple(out)


# --------------------------------------------------------------------------------------------- masks and splits

def mask_of(image: DetectionImage, i: int) -> np.ndarray:
    """The (height, width) uint8 0/1 mask of box i, decoded from its COCO polygons or RLE."""
    from pycocotools import mask as mask_utils

    if not image.segmentations or image.segmentations[i] is None:
        raise ValueError(f"{image.path}: box {i} has no segmentation (DetectionData.has_masks is False)")
    seg, h, w = image.segmentations[i], image.height, image.width
    if isinstance(seg, list):  # polygons: rasterise each, then their union
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        counts = seg["counts"]
        rle = {"size": list(seg["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


def split_images(data: DetectionData, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/val split of image indices (sorted int64 arrays).

    Lightly stratified: an image goes to val only if every class in it with 2+ images keeps an image in
    train, so no such class is missing from training (val may then hold a few images fewer than asked);
    a class with a single image keeps it in train while val can be filled without it. val_split > 0
    gives at least 1 val image when there are 2+ images, and train keeps at least 1."""
    if not 0 <= val_split < 1:
        raise HeadstartError(f"the validation split is {val_split}; give a fraction from 0 up to (not including) 1")
    n = len(data)
    n_val = round(n * val_split)
    if val_split > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    order = np.random.default_rng(seed).permutation(n)
    present = [np.unique(im.labels) for im in data.images]
    in_train = np.zeros(len(data.classes), dtype=np.int64)
    for cls in present:
        in_train[cls] += 1
    several = in_train >= 2
    val: list[int] = []
    val_set: set[int] = set()
    # First pass: no class loses its last train image (a class with one image keeps it in train).
    # Second pass, if val is still short: only classes with 2+ images are protected, as promised.
    for protected in (np.ones_like(several), several):
        for i in order:
            if len(val) == n_val:
                break
            cls = present[i]
            if i in val_set or np.any(protected[cls] & (in_train[cls] <= 1)):
                continue
            in_train[cls] -= 1
            val.append(int(i))
            val_set.add(int(i))
    train = np.array(sorted(i for i in range(n) if i not in val_set), dtype=np.int64)
    return train, np.array(sorted(val), dtype=np.int64)


# --------------------------------------------------------------------------------------------- small helpers

def _listing(items: Sequence[object], n: int = SHOWN, sep: str = ", ") -> str:
    """The first n items, then how many more: 'a, b, c, ... and 4 more'."""
    shown = sep.join(str(x) for x in items[:n])
    return shown + (f"{sep}... and {len(items) - n} more" if len(items) > n else "")


def _quoted(keys: Sequence[str]) -> str:
    return " and ".join(f'"{k}"' for k in keys)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _hashable(v: object) -> object:
    return v if isinstance(v, (int, str)) and not isinstance(v, bool) else None


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _float(s: str | None) -> float | None:
    try:
        v = float(str(s).strip())
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _voc_int(s: str | None) -> int:
    v = _float(s)
    return int(v) if v is not None and v > 0 else 0


__all__ = ["DetectionData", "DetectionImage", "is_detection_data", "mask_of", "read_detection_data", "split_images"]
