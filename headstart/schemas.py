"""The shapes of the JSON files headstart reads back (a run's headstart.json, an export's metadata),
checked with jsonschema before any field is used: a file that was edited or damaged is one line naming
the file and the field, never a KeyError or a TypeError further on."""

from __future__ import annotations

from typing import Any

from .errors import HeadstartError

_POSITIVE_INT = {"type": "integer", "minimum": 1}
_NAMES = {"type": "array", "items": {"type": "string"}, "minItems": 1}

IMAGE_PREPROCESSING = {
    "type": "object",
    "required": ["crop", "resize", "mean", "std"],
    "properties": {
        "crop": _POSITIVE_INT, "resize": _POSITIVE_INT, "interpolation": {"type": "string"},
        "mean": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3},
        "std": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1, "maxItems": 3},
    },
}

CARD = {
    "type": "object",
    "required": ["name", "modality", "architecture", "weights", "preprocessing", "num_features"],
    "properties": {
        "name": {"type": "string"}, "modality": {"enum": ["image", "text"]}, "architecture": {"type": "string"},
        "weights": {"type": "object"}, "preprocessing": {"type": "object"}, "num_features": _POSITIVE_INT,
    },
    "if": {"properties": {"modality": {"const": "image"}}},
    "then": {"properties": {"preprocessing": IMAGE_PREPROCESSING}},
}

HEAD = {
    "type": "object",
    "required": ["kind"],
    "properties": {"kind": {"enum": ["linear", "mlp"]}, "hidden": _POSITIVE_INT,
                   "dropout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}},
}

_ANCHORS = {  # YOLO's: per level (finest first), the same number of (width, height) pairs in input pixels
    "type": "array", "minItems": 1,
    "items": {"type": "array", "minItems": 1,
              "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number", "exclusiveMinimum": 0}}},
}

SPEC = {  # a detector's (headstart.detection.model.DetectorSpec)
    "type": "object",
    "required": ["base", "arch", "kind", "classes", "min_size", "max_size"],
    "properties": {"base": {"enum": ["card", "torchvision", "darknet"]}, "arch": {"type": "string"},
                   "kind": {"enum": ["faster", "mask", "yolo"]},
                   "classes": _NAMES, "min_size": {"type": "integer", "minimum": 64},
                   "max_size": {"type": "integer", "minimum": 64}},
    "if": {"properties": {"kind": {"const": "yolo"}}, "required": ["kind"]},
    "then": {"required": ["anchors"], "properties": {"base": {"enum": ["card", "darknet"]}, "anchors": _ANCHORS}},
    "allOf": [{"if": {"properties": {"base": {"const": "darknet"}}, "required": ["base"]},
               "then": {"required": ["darknet_cfg"], "properties": {"kind": {"const": "yolo"},
                                                                    "darknet_cfg": {"type": "string"}}}}],
}

_NAMED = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}

RUN = {
    "type": "object",
    "required": ["classes", "status"],
    "properties": {
        "status": {"enum": ["training", "finished"]}, "task": {"enum": ["classify", "detect"]}, "classes": _NAMES,
        "files": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        "config": {"type": "object"},
    },
    "if": {"properties": {"task": {"const": "detect"}}, "required": ["task"]},
    "then": {"required": ["spec"], "properties": {"spec": SPEC, "card": {"oneOf": [{"type": "null"}, CARD]}}},
    "else": {"required": ["card", "head", "body_id"],
             "properties": {"card": CARD, "head": HEAD, "body_id": {"type": "string"}}},
}

_STARTED_DATA = {  # DATA as a run in progress recorded it, to check that --resume trains on the same files
    "type": "object", "required": ["source", "fingerprint", "n"],
    "properties": {"source": {"type": "string"}, "fingerprint": {"type": "string"}, "n": {"type": "integer"}},
}

STOPPED = {  # a run stopped before it finished (--resume reads it; its config is checked by TrainConfig)
    "type": "object",
    "required": ["status", "classes", "config", "data"],
    "properties": {"status": {"const": "training"}, "task": {"enum": ["classify", "detect"]}, "classes": _NAMES,
                   "config": {"type": "object", "required": ["strategy"]}, "data": _STARTED_DATA,
                   # learning from U: the body (fixmatch, mcc, dann), or contrastive's last head (a head method)
                   "adapt": {"type": "object", "required": ["method", "unlabelled"],
                             "properties": {"method": {"enum": ["fixmatch", "mcc", "dann", "auto", "none",
                                                                "self-training", "coral", "coral+self-training"]},
                                            "unlabelled": {"type": "object", "required": ["source", "used", "fingerprint"],
                                                           "properties": {"source": {"type": "string"},
                                                                          "used": {"type": "integer"},
                                                                          "fingerprint": {"type": "string"}}}}}},
    "if": {"properties": {"task": {"const": "detect"}}, "required": ["task"]},
    "then": {"required": ["spec"], "properties": {"spec": SPEC, "card": {"oneOf": [{"type": "null"}, CARD]}}},
    "else": {"required": ["card", "head"],
             "properties": {"card": CARD, "head": HEAD, "config": {"properties": {"head": HEAD}}}},
}

EXPORT = {
    "type": "object",
    "required": ["classes"],
    "properties": {"classes": _NAMES, "task": {"enum": ["classify", "detect"]}},
    "if": {"properties": {"task": {"const": "detect"}}, "required": ["task"]},
    "then": {"required": ["inputs", "outputs", "detector"],
             "properties": {"inputs": {"type": "array", "items": _NAMED, "minItems": 1},
                            "outputs": {"type": "array", "items": _NAMED, "minItems": 1},
                            "detector": {"type": "object", "required": ["min_score"],
                                         "properties": {"min_score": {"type": "number", "minimum": 0}}}}},
    "else": {"required": ["preprocessing", "input", "output"],
             "properties": {"preprocessing": IMAGE_PREPROCESSING, "input": _NAMED, "output": _NAMED}},
}


def check(document: Any, schema: dict[str, Any], where: str, fix: str) -> None:
    """`document` fits `schema`, or one line: `where`, the field, what is wrong with it, and `fix`."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(document))
    if error is None:
        return
    field = ".".join(str(p) for p in error.absolute_path)
    what = error.message if len(error.message) <= 120 else error.message[:117] + "..."
    raise HeadstartError(f"{where}: {'field ' + repr(field) if field else 'its content'} is not valid ({what}); {fix}")
