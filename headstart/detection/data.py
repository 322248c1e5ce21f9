"""Detection DATA: COCO JSON (boxes, optionally masks), a Pascal VOC folder or YOLO labels (boxes).

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
    folder/images/ + labels/*.txt, data.yaml YOLO (or each .txt beside its image, + classes.txt): yolo_format.py

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
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import check_image
from ..data.modality import COCO_FILE, find_coco_json, is_detection_data, is_yolo, voc_xmls  # noqa: F401
from ..errors import HeadstartError, plural, shortlist
from .dataset import DetectionData, DetectionImage, mask_of, split_images  # noqa: F401  (also read from here)
from .yolo_format import SKIP_FLAG, scan_yolo, to_number

COCO_KEYS = ("images", "annotations", "categories")
LAYOUTS = ('a COCO JSON file (with "images", "annotations" and "categories"), a folder holding annotations.json '
           "(or annotations/instances_*.json), a Pascal VOC folder (Annotations/*.xml + JPEGImages/), or YOLO labels "
           "(images/ + labels/*.txt, or each .txt beside its image, with classes.txt or a data.yaml of names:)")
BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image before it counts as outside (it is clipped)


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
        if root.suffix.lower() in (".yaml", ".yml"):
            return _read_yolo(root, str(data), skip_bad, log)
        if root.suffix.lower() != ".json":
            raise HeadstartError(f"DATA '{data}' is not a detection dataset; give {LAYOUTS}")
        return _read_coco(root, str(data), skip_bad, log)
    coco = find_coco_json(root)
    if coco is not None:
        return _read_coco(coco, str(data), skip_bad, log)
    if (root / "Annotations").is_dir():
        return _read_voc(root, str(data), skip_bad, log)
    if is_yolo(root, need_names=False):
        return _read_yolo(root, str(data), skip_bad, log)
    raise HeadstartError(f"DATA folder '{data}' is not a detection dataset (no annotations.json, "
                         f"annotations/*.json, Annotations/*.xml or YOLO labels); give {LAYOUTS}")


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
        listed = " and ".join(f'"{k}"' for k in missing)
        raise HeadstartError(f"{where} lacks the {listed} {'list' if len(missing) == 1 else 'lists'}; "
                             'a COCO detection file has "images", "annotations" and "categories" lists')
    classes, cat_ids = _coco_categories(where, doc["categories"])
    imgs = _coco_images(where, path, doc["images"])
    by_id = {im.image_id: k for k, im in enumerate(imgs)}

    not_dict = [i for i, a in enumerate(doc["annotations"]) if not isinstance(a, dict)]
    if not_dict:
        raise HeadstartError(f'{where}: {plural(len(not_dict), "entry", "entries")} of "annotations" '
                             f"{'is not an object' if len(not_dict) == 1 else 'are not objects'} "
                             f"(positions {shortlist(not_dict)}); each annotation is "
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
                                 f'image ids not in "images": {shortlist(shown)}; fix the image ids, or pass '
                                 f"{SKIP_FLAG} to drop {'that annotation' if one else 'those annotations'}")
        log(f"{where}: dropping {plural(len(orphans), 'annotation')} whose image id is not in \"images\": "
            f"{shortlist(shown)}")
        drop = {k for k, _ in orphans}
        anns = [(k, a) for k, a in anns if k not in drop]

    known = set(cat_ids)
    unknown = [(k, a) for k, a in anns if _hashable(a.get("category_id")) not in known]
    if unknown:
        shown = [f"{refs[k]} (category_id {a.get('category_id')!r})" for k, a in unknown]
        one = len(unknown) == 1
        if not skip_bad:
            raise HeadstartError(f'{where}: {plural(len(unknown), "annotation")} {"has" if one else "have"} a '
                                 f'category_id not in "categories" (known ids: {shortlist(sorted(known), 20)}): '
                                 f"{shortlist(shown)}; fix the ids or add the categories, or pass {SKIP_FLAG} to "
                                 f"drop {'that annotation' if one else 'those annotations'}")
        log(f"{where}: dropping {plural(len(unknown), 'annotation')} with a category_id not in \"categories\": "
            f"{shortlist(shown)}")
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
                             f'{shortlist(bad)}) lack an integer "id" or a "name"; each category is '
                             '{"id": 1, "name": "cat"}')
    cats = sorted(cats, key=lambda c: c["id"])
    dup_ids = sorted(i for i, n in Counter(c["id"] for c in cats).items() if n > 1)
    if dup_ids:
        raise HeadstartError(f'{where}: category ids {shortlist(dup_ids)} are used by more than one category; '
                             "give each category its own id")
    names = Counter(c["name"] for c in cats)
    dups = [f"'{n}' (ids {', '.join(str(c['id']) for c in cats if c['name'] == n)})" for n, k in names.items() if k > 1]
    if dups:
        raise HeadstartError(f"{where}: category names {shortlist(dups)} are used by more than one category; "
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
        raise HeadstartError(f'{where}: {plural(len(bad), "entry", "entries")} of "images" (positions {shortlist(bad)}) '
                             'lack an integer "id" or a "file_name", or have a width or height that is not a positive '
                             'integer; each image is {"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}')
    dup = sorted(i for i, n in Counter(e["id"] for e in entries).items() if n > 1)
    if dup:
        raise HeadstartError(f"{where}: image ids {shortlist(dup)} are used by more than one image; give each image "
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
    return (x, y, x + w, y + h), "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in bbox) + "]", ""


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
    xmls = voc_xmls(root / "Annotations")
    if not xmls:
        raise HeadstartError(f"{where}: Annotations/ holds no .xml files; put one Pascal VOC XML per image there")
    jpegs = root / "JPEGImages"
    h = hashlib.sha256()
    imgs: list[_Img] = []
    objs: list[_Obj] = []
    unparsable: list[str] = []
    for k, x in enumerate(xmls, start=1):
        raw = x.read_bytes()
        h.update(os.fsencode(x.name) + f"\0{len(raw)}\0".encode() + raw)
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
            vals = [to_number(c) for c in corners]
            bad = ""
            if not label:
                bad = "the object has no <name>"
            elif any(v is None for v in vals):
                bad = "<bndbox> lacks numeric xmin, ymin, xmax, ymax"
            box = None if bad else (vals[0] - 1, vals[1] - 1, vals[2], vals[3])  # 1-based inclusive -> pixel edges
            objs.append(_Obj(img=len(imgs) - 1, label=label, box=box, shown=shown, ref=f"object {j} of {x.name}",
                             bad=bad))
    if unparsable:
        one, listing = len(unparsable) == 1, shortlist(unparsable, sep="; ")
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


def _read_yolo(data: Path, source: str, skip_bad: bool, log: Callable[[str], object]) -> DetectionData:
    s = scan_yolo(data, skip_bad, log)
    imgs = [_Img(name=name, candidates=[p], width=0, height=0, image_id=k + 1) for k, (name, p) in enumerate(s.images)]
    objs = [_Obj(img=b.image, label=b.label, box=b.box, shown=b.shown, ref=b.ref, bad=b.bad) for b in s.boxes]
    keep_imgs, objs = _check_files(s.where, imgs, objs, skip_bad, log, what="objects")
    for o in objs:  # fractions of the image -> pixels, now that the sizes are read from the files
        if o.box is not None:
            w, h = imgs[o.img].width, imgs[o.img].height
            o.box = (o.box[0] * w, o.box[1] * h, o.box[2] * w, o.box[3] * h)
    objs = _check_boxes(s.where, imgs, objs, skip_bad, log)
    images = _assemble(imgs, keep_imgs, objs, lambda o: int(o.label), None)  # type: ignore[call-overload]
    return DetectionData(images=images, classes=s.classes, category_ids=tuple(range(1, len(s.classes) + 1)),
                         source=source, format="yolo", has_masks=False, annotations_sha256=s.sha256)


# --------------------------------------------------------------------------------------------- checks shared by all

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
    listing = shortlist([f"{imgs[k].name} ({problems[k]})" for k in bad], sep="; ")
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
        one, listing = len(bad) == 1, shortlist(bad, sep="; ")
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


# --------------------------------------------------------------------------------------------- small helpers

def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _hashable(v: object) -> object:
    return v if isinstance(v, (int, str)) and not isinstance(v, bool) else None


def _voc_int(s: str | None) -> int:
    v = to_number(s)
    return int(v) if v is not None and v > 0 else 0


__all__ = ["DetectionData", "DetectionImage", "is_detection_data", "mask_of", "read_detection_data", "split_images"]
