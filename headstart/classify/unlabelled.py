"""A classifier's head learns from unlabelled examples too (`fit --unlabelled U --adapt METHOD`): U is read and
checked before any work (headstart.data.unlabelled), its features come from the same body and cache as
DATA's, and headstart.adapt decides what the head is fitted on. The head that is written takes raw body
features like any other, so evaluate, predict and export work on the run unchanged; metrics["adapt"] and
headstart.json's "adapt" say which method ran and how much of U it used. (With --adapt fixmatch, mcc or dann
the body learns from U through the engine instead, classify.adapt_task; which options go together is checked
here.)"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..adapt import BODY_METHODS, ENGINE_METHODS, adapt, check_method
from ..console import log
from ..data.unlabelled import Unlabelled, read_unlabelled
from ..errors import HeadstartError
from ..heads import HeadSpec
from ..options import AdaptOptions
from ..probe import HeadResult, HeadTraining, train_head
from ..strategies import Strategy

AUTO_REASON = ("auto: --unlabelled adapts the head on cached features, so the linear probe (--adapt fixmatch, mcc "
               "or dann train the body with U)")
ENGINE_STRATEGY = "lp-ft"  # --strategy auto with --adapt fixmatch|mcc|dann: the head first, then every layer with U


def auto_reason(method: str) -> str:
    """Why --strategy auto with --unlabelled gives the strategy it gives (fit, classify.fit)."""
    if method in ENGINE_METHODS:
        return (f"auto: --adapt {method} trains the body with U, so {ENGINE_STRATEGY} (the head on cached features "
                "first, then every layer on DATA and U)")
    return AUTO_REASON


def check_adapt_options(a: AdaptOptions, strategy: str) -> str:
    """--adapt's method; --adapt without --unlabelled, or --unlabelled with a strategy that trains the body, is
    one line before any work."""
    method = check_method(a.adapt)
    if a.unlabelled is None:
        if method != "auto":
            raise HeadstartError(f"--adapt {a.adapt} needs unlabelled examples: give them with --unlabelled U")
        return method
    if strategy.strip().lower() == "auto":
        return method
    chosen = Strategy.parse(strategy)
    trains_body = chosen.trains_body and chosen.kind != "contrastive"  # contrastive's head is fitted on embeddings
    if method in ENGINE_METHODS and not trains_body:
        raise HeadstartError(f"--adapt {method} trains the body with U, and --strategy {strategy} does not: use "
                             f"--strategy {ENGINE_STRATEGY}, finetune or partial:N (or auto)")
    if method not in ENGINE_METHODS and trains_body:
        raise HeadstartError(f"--unlabelled with --adapt {method} adapts a head on cached features, and --strategy "
                             f"{strategy} trains the body: use --adapt fixmatch, mcc or dann to train the body with U, or "
                             "--strategy linear-probe (texts: or contrastive)")
    return method


def read_for(p: Any, a: AdaptOptions, skip_bad_files: bool, text_column: str, label_column: str) -> Unlabelled | None:
    """U for the prepared DATA `p` (headstart.classify.prepare.Prepared), checked; None without --unlabelled."""
    if a.unlabelled is None:
        return None
    method = check_method(a.adapt)
    if method in BODY_METHODS and p.samples.modality != "image":
        raise HeadstartError(f"--adapt {a.adapt} re-estimates an image model's BatchNorm statistics; for texts use "
                             "self-training (or auto)")
    if method in ENGINE_METHODS and p.samples.modality != "image":
        raise HeadstartError(f"--adapt {a.adapt} trains an image model's body with augmented views of U; for texts "
                             "use self-training (or auto)")
    if p.card.architecture == "word-vectors":
        raise HeadstartError(f"--unlabelled works with image models and transformer encoders for now; "
                             f"'{p.card.name}' is a word-vector model: choose minilm_l6, or leave out --unlabelled")
    u = read_unlabelled(a.unlabelled, p.samples.modality, p.samples, len(p.samples.classes),
                        skip_bad_files=skip_bad_files, text_column=text_column, label_column=label_column, log=log)
    for note in u.notes:
        log(note)
    return u


def head_from(spec: HeadSpec, x: np.ndarray, y: np.ndarray, xu: np.ndarray, k: int, training: HeadTraining,
              method: str, plain: HeadResult) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The head's weights (taking raw features) after `method` learned from U's features `xu` (headstart.adapt;
    `plain`: the head fitted on (x, y) alone, kept where the method is none or falls back), and its record."""
    result = adapt(spec, x, y, xu, k, training, method, log=log, plain=plain)
    weights = plain.weights
    if result.method != "none":
        final = result.head or train_head(spec, result.x, result.y, None, None, k,
                                          HeadTraining(class_balance=training.class_balance, seed=training.seed,
                                                       c=result.c))
        weights = result.feature_map.fold_into(final.weights) if result.feature_map else final.weights
    return weights, result.record


def adapted_head(p: Any, u: Unlabelled, method: str, spec: HeadSpec, training: HeadTraining, plain: HeadResult,
                 x: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    """The head's weights (taking raw body features) after learning from U, metrics["adapt"], and for AdaBN the
    body it was fitted on (torch module; None: the card's body as it is)."""
    body = None
    if method in BODY_METHODS:  # AdaBN: the body's statistics from U, then every feature again
        from ..features import extract, restat_batchnorm
        from ..run import body_fingerprint

        pre, everything = p.card.preprocessing, list(p.samples.paths)
        log(f"adapt: BatchNorm statistics of {len(u.items):,} unlabelled images (AdaBN), then the features again")
        body = restat_batchnorm(p.body(), pre, u.items, p.device)
        body_id = body_fingerprint(body)

        def features_of(paths: list[Any]) -> Any:
            return extract(lambda: body, body_id, pre, paths, p.card.num_features, p.cache, p.device,
                           model_name=p.card.name)

        x = np.asarray(features_of(everything).array)
        feats = features_of(list(u.items))
        plain = train_head(spec, x, y, None, None, len(p.samples.classes), training)
    else:
        feats = p.embed(u.items)
        log(f"adapt: {len(u.items):,} unlabelled {'texts' if p.samples.modality == 'text' else 'images'}, features "
            f"{'from the cache' if feats.cache_hit else f'in {feats.seconds:.1f}s'}")
    inner = method if body is None else ("self-training" if method.endswith("self-training") else "none")
    weights, record = head_from(spec, x, y, np.asarray(feats.array), len(p.samples.classes), training, inner, plain)
    record |= {"unlabelled": u.record(), "extract_seconds": round(feats.seconds, 3), "cache_hit": feats.cache_hit}
    if body is not None:
        record.update(method=method, reason=f"chosen with --adapt {method}: the body's BatchNorm statistics are U's"
                      + (", then self-training" if inner == "self-training" else ""))
    log(f"adapt     {record['method']}: {record['reason']}")
    return weights, record, body
