"""A run folder: everything needed to use a trained model, and what happened while training it.

  RUN_DIR/model.safetensors   body.* and head.* tensors of the whole network
  RUN_DIR/headstart.json      card, head, class names, preprocessing, body identity
  RUN_DIR/metrics.json        what training measured

Written atomically (built beside RUN_DIR, then renamed), loaded without pickle.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

from .console import log
from .data.images import expand_files, readable
from .errors import HeadstartError
from .fileio import atomic_dir, release_lock
from .heads import HeadSpec
from .rundir import (FILES_KEY, METRICS_FILE, RUN_FILE, RUN_FORMAT, WEIGHTS_FILE, check_out_dir, is_run_dir,  # noqa: F401
                     read_run_metrics, read_run_weights, run_info, run_record, torch_weights, write_run_files)
from .runtime import pick_device
from .zoo.card import ModelCard, Preprocessing, TextPreprocessing
from .zoo.weights import match_state_dict

if TYPE_CHECKING:  # torch is imported when the network is built or used: a run's record needs none
    from torch import nn

    from .data.transforms import EvalTransform
    from .surgery import TransferModel


def body_fingerprint(model: nn.Module) -> str:
    """Identity of a trained body (its tensors), so that its features are cached apart from the card's."""
    from .surgery import TransferModel

    h = hashlib.sha256()
    body = model.body if isinstance(model, TransferModel) else model
    for name, t in body.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def assemble(card: ModelCard, head: HeadSpec, num_classes: int, text: dict[str, Any] | None = None) -> TransferModel:
    """The run's network, its weights to be loaded: the card's architecture cut at its classifier
    (a text card's encoder; a word-vector network for the run's vocabulary), plus the head."""
    from .surgery import TransferModel, split
    from .zoo.build import build_architecture

    if card.architecture == "transformers":
        from .text.network import load_encoder_body

        body: nn.Module = load_encoder_body(card)
        return TransferModel(body, head.build(card.num_features, num_classes))
    if card.architecture == "word-vectors":
        from .text.network import word_body_from_record

        if not text or not text.get("network"):
            raise HeadstartError("the run's headstart.json has no vocabulary for its word-vector network; fit again")
        wbody, _ = word_body_from_record(text["network"])
        return TransferModel(wbody, head.build(wbody.num_features, num_classes))
    body, _ = split(build_architecture(card.architecture, num_classes=card.source_classes or 1000), card.classifier)
    return TransferModel(body, head.build(card.num_features, num_classes))


class Run:
    """A trained model and its record; what headstart.fit returns and headstart.load reads.

    `model` may be left out when the run folder is already written (a linear probe re-fitted on
    cached features writes it without building the network): it is then loaded on first use."""

    def __init__(self, dir: Path, card: ModelCard, head: HeadSpec, classes: tuple[str, ...], body_id: str,
                 model: TransferModel | None = None, info: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, device: str | None = None) -> None:
        self.dir, self.card, self.head, self.classes, self.body_id = Path(dir), card, head, tuple(classes), body_id
        self.info = info if info is not None else {}
        self.metrics = metrics if metrics is not None else {}
        self._model, self._device = model, device

    @property
    def model(self) -> TransferModel:
        """The network: body and head, logits out."""
        if self._model is None:
            self._model = load_network(self.dir, self.card, self.head, self.classes, self.info, self._device)
        return self._model

    @model.setter
    def model(self, value: TransferModel) -> None:
        self._model = value

    def __repr__(self) -> str:
        return f"Run(dir={str(self.dir)!r}, model={self.card.name!r}, classes={len(self.classes)})"

    @property
    def preprocessing(self) -> Preprocessing | TextPreprocessing:
        return self.card.preprocessing

    @property
    def modality(self) -> str:
        return self.card.modality

    def transform(self) -> EvalTransform:
        """Image runs: a PIL image (or a path) -> the float tensor (3, crop, crop) that `run.model`
        takes, built from run.preprocessing (resize, centre crop, interpolation, mean, std): what
        predict does to each file, for using the network in your own code."""
        if not isinstance(self.preprocessing, Preprocessing):
            raise HeadstartError(f"run '{self.dir}' is a text run: its inputs are token ids from run.tokenizer(), "
                                 "not images")
        from .data.transforms import EvalTransform

        return EvalTransform(self.preprocessing)

    def tokenizer(self):
        """Text runs: strings -> token ids, as in training (the card's tokenizer, or the run's vocabulary)."""
        from .text.inputs import Tokenizer, card_model_dir
        from .text.network import word_body_from_record

        pre = self.card.preprocessing
        assert isinstance(pre, TextPreprocessing)
        options = (self.info.get("text") or {}).get("options") or {}
        pre = TextPreprocessing(pre.tokenizer, options.get("max_length") or pre.max_length, pre.pooling, pre.normalize)
        if pre.tokenizer == "hf":
            return Tokenizer(pre, model_dir=card_model_dir(self.card))
        return Tokenizer(pre, vocabulary=word_body_from_record(self.info["text"]["network"])[1])

    def features(self, inputs: list[str | Path], batch_size: int | None = None, skip_bad_files: bool = False,
                 device: str | None = None) -> tuple[list[str], np.ndarray]:
        """(names, body features) for image files (folders are searched) or, for text runs, strings
        and text files (.txt: one text; .csv/.jsonl: its text column)."""
        dev = pick_device(device)
        if self.modality == "text":
            from .data.texts import read_predict_texts
            from .features import run_text_body

            column = ((self.info.get("text") or {}).get("options") or {}).get("text_column") or "text"
            texts = read_predict_texts([str(t) for t in inputs], text_column=column)  # the column it was fitted on
            tokens = self.tokenizer()(texts)
            tokens.say_truncated()
            feats = np.empty((len(texts), self.head_inputs), dtype=np.float32)
            run_text_body(self.model.body, tokens, feats, dev, batch_size)
            return texts, feats
        paths = expand_files(inputs)
        paths = [paths[i] for i in readable(paths, skip_bad_files, log=log)]
        feats = np.empty((len(paths), self.head_inputs), dtype=np.float32)
        if paths:
            from .features import run_body

            run_body(self.model.body, self.preprocessing, paths, feats, dev, batch_size)
        return [str(p) for p in paths], feats

    @property
    def head_inputs(self) -> int:
        return next(p for p in self.model.head.parameters() if p.ndim == 2).shape[1]

    def _record(self) -> dict[str, Any]:
        return run_record(self.info, self.card, self.head, self.classes, self.body_id)

    def _write(self, folder: Path) -> None:
        write_run_files(folder, torch_weights(self.model), self.metrics, self._record(), run_dir=self.dir)

    def save(self) -> None:
        """Write the whole run folder at once: built beside RUN_DIR, then swapped in."""
        with atomic_dir(self.dir, replace=True) as tmp:
            self._write(tmp)
        release_lock(self.dir)

    def save_in_place(self) -> None:
        """Finish a run folder that training filled (logs stay): each file atomic, headstart.json last."""
        self._write(self.dir)
        release_lock(self.dir)

    def predict(
        self,
        files: list[str | Path],
        top_k: int = 5,
        batch_size: int | None = None,
        skip_bad_files: bool = False,
        device: str | None = None,
    ) -> list[dict[str, Any]]:
        """Label, score and top-k classes for each image file (folders are searched for images), or
        for text runs each string / text file."""
        check_top_k(top_k)
        names, feats = self.features(files, batch_size, skip_bad_files, device)
        return top_k_results(names, self.head_probabilities(feats), self.classes, top_k,
                             "text" if self.modality == "text" else "file")

    def head_probabilities(self, features: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Class probabilities from body features, on whatever device the head lives."""
        import torch

        head = self.model.head.eval()
        dev = next(head.parameters()).device
        with torch.inference_mode():
            out = [torch.softmax(head(torch.from_numpy(np.array(features[i : i + batch], dtype=np.float32)).to(dev)),
                                 dim=1).cpu().numpy()
                   for i in range(0, len(features), batch)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), dtype=np.float32)


def check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise HeadstartError(f"--top-k must be >= 1; got {top_k}")


def top_k_results(names: list[str], probs: np.ndarray, classes: tuple[str, ...], top_k: int,
                  what: str = "file") -> list[dict[str, Any]]:
    """predict's result rows: {what: name, label, score, top_k: [{label, score}, ...]} per input,
    one shape for run folders and exported models."""
    k = min(top_k, len(classes))
    out = []
    for p, row in zip(names, probs):
        order = np.argsort(-row)[:k]
        out.append({
            what: p,
            "label": classes[order[0]],
            "score": float(row[order[0]]),
            "top_k": [{"label": classes[i], "score": float(row[i])} for i in order],
        })
    return out


def load_classifier(d: Path, info: dict[str, Any], device: str | None = None) -> Run:
    """A finished classification run (rundir.finished_run checked its folder): see headstart.load."""
    metrics = read_run_metrics(d, info)
    card = ModelCard.from_dict(info["card"])
    head = HeadSpec.from_dict(info["head"])
    classes = tuple(info["classes"])
    model = load_network(d, card, head, classes, info, device)
    # The body's identity keys its cached features: the recorded one where headstart.json's sha256 proved the
    # weights read are those it was recorded for; else (a run of headstart 0.2) one from the tensors read.
    body_id = info["body_id"] if (info.get(FILES_KEY) or {}).get(WEIGHTS_FILE) else body_fingerprint(model)
    return Run(dir=d, card=card, head=head, classes=classes, body_id=body_id, model=model, info=info,
               metrics=metrics)


def load_network(d: Path, card: ModelCard, head: HeadSpec, classes: tuple[str, ...], info: dict[str, Any],
                 device: str | None = None) -> TransferModel:
    """The run's network with the weights of RUN_DIR/model.safetensors, in eval mode on `device`."""
    sd = read_run_weights(d, info)  # checked against its recorded hash: the weights are the run's own
    try:
        model = assemble(card, head, len(classes), info.get("text"))
        mapped, _ = match_state_dict(model, sd, "name", "", f"run '{d}'")
    except HeadstartError as e:  # then headstart.json describes another network (edited?)
        raise HeadstartError(f"{e}; run '{d}': its {RUN_FILE} describes another network than its weights (edited?): "
                             "restore it, or run `headstart fit` again") from None
    model.load_state_dict(mapped, strict=True)
    return model.eval().to(pick_device(device))
