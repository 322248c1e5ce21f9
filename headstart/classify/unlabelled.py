"""A classifier's head learns from unlabelled examples too (`fit --unlabelled U --adapt METHOD`): U is read and
checked before any work (headstart.data.unlabelled), its features come from the same body and cache as
DATA's, and headstart.adapt decides what the head is fitted on. The head that is written takes raw body
features like any other, so evaluate, predict and export work on the run unchanged; metrics["adapt"] and
headstart.json's "adapt" say which method ran and how much of U it used. (With --adapt fixmatch, mcc or dann
the body learns from U through the engine instead, classify.adapt_task; which options go together is checked
here.)

--adapt auto with a strategy that trains the body (body_auto): U is measured on the pretrained body's features
(the domain classifier, the probe's confidence: headstart.adapt), the run without U is trained first, beside
--out, as the reference, then the run with U by adapt.AUTO_BODY in --out; settle() keeps the run with U unless
its validation score is more than adapt.HARM behind the reference's, which then becomes the run. A run killed
while it trains with U resumes, and is settled the same way when it ends."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..adapt import AUTO_BODY, BODY_METHODS, ENGINE_METHODS, HARM, adapt, check_method, confidence, domain_gap
from ..console import log
from ..data.unlabelled import Unlabelled, read_unlabelled
from ..errors import HeadstartError
from ..heads import HeadSpec
from ..options import AdaptOptions
from ..probe import HeadResult, HeadTraining, train_head
from ..runtime import is_main_rank
from ..strategies import Strategy

if TYPE_CHECKING:
    from ..run import Run

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
    trains_body = trains_the_body(strategy)
    if method in ENGINE_METHODS and not trains_body:
        raise HeadstartError(f"--adapt {method} trains the body with U, and --strategy {strategy} does not: use "
                             f"--strategy {ENGINE_STRATEGY}, finetune or partial:N (or auto) with image DATA (texts learn "
                             "from U with --adapt self-training or auto)")
    if method not in (*ENGINE_METHODS, "auto") and trains_body:
        raise HeadstartError(f"--unlabelled with --adapt {method} adapts a head on cached features, and --strategy "
                             f"{strategy} trains the body: use --adapt auto, fixmatch, mcc or dann to train the body with "
                             "U, or --strategy linear-probe (texts: or contrastive)")
    return method


def trains_the_body(strategy: str) -> bool:
    """Whether --strategy trains the body, so that U is learnt from through the engine (auto: decided later)."""
    if strategy.strip().lower() == "auto":
        return False
    chosen = Strategy.parse(strategy)
    return chosen.trains_body and chosen.kind != "contrastive"  # contrastive's head is fitted on embeddings


def read_for(p: Any, a: AdaptOptions, skip_bad_files: bool, text_column: str, label_column: str,
             strategy: str = "auto") -> Unlabelled | None:
    """U for the prepared DATA `p` (headstart.classify.prepare.Prepared), checked; None without --unlabelled."""
    if a.unlabelled is None:
        return None
    method = check_method(a.adapt)
    if method == "auto" and trains_the_body(strategy):  # body_auto
        if p.samples.modality != "image":
            raise HeadstartError(f"--adapt auto with --strategy {strategy} trains the body with unlabelled images; for "
                                 "texts use --strategy contrastive or linear-probe (their heads learn from U)")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise HeadstartError(f"--adapt auto trains the run twice (without U, then with it), which is not done under "
                                 f"several processes: name the method, e.g. --adapt {AUTO_BODY}")
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


def reference_dir(out_dir: Path) -> Path:
    """Where --adapt auto keeps the run without U (beside --out) until the run with U is settled against it."""
    return out_dir.with_name(f".{out_dir.name}.adapt-reference")


def val_score(metrics: dict[str, Any]) -> float | None:
    """A body run's score on its validation split: balanced accuracy, or accuracy without --class-balance."""
    return metrics.get("val_balanced_accuracy" if metrics["config"].get("class_balance") else "val_accuracy")


def body_auto(p: Any, u: Unlabelled, spec: HeadSpec, training: HeadTraining, out_dir: Path,
              train: Callable[[Path, tuple[Unlabelled, str] | None, dict[str, Any] | None], Run]) -> Run:
    """--adapt auto where the body trains (see the module's docstring). `train(folder, U and its method or None,
    auto's record)` is a run of the strategy chosen; its last step settles the run with U (settle)."""
    tr, k = p.train_idx, len(p.samples.classes)
    x, y = np.asarray(p.features().array)[tr], p.samples.labels[tr]
    xu = np.asarray(p.embed(u.items).array)
    record: dict[str, Any] = {"requested": "auto", "confidence": confidence(train_head(spec, x, y, None, None, k, training),
                                                                            xu),
                              "domain": domain_gap(x, xu, training.seed), "reference": None}
    if not len(p.val_idx):
        log(f"adapt: auto trains the body with {AUTO_BODY}; nothing is held out (--val-split 0) to check it against "
            "the run without U")
        return train(out_dir, (u, AUTO_BODY), record)
    ref = reference_dir(out_dir)
    shutil.rmtree(ref, ignore_errors=True)
    log(f"adapt: auto trains the body with {AUTO_BODY}, checked on the validation split against the run without U: "
        "that run first")
    without = train(ref, None, None)
    record["reference"] = {"val_score": val_score(without.metrics), "seconds": without.metrics.get("train_seconds")}
    log(f"adapt: without U {record['reference']['val_score']:.3f} on the validation split; now with U ({AUTO_BODY})")
    return train(out_dir, (u, AUTO_BODY), record)


def settle(run: Run) -> Run:
    """The end of a run that --adapt auto trained with U: it stays the run unless its validation score is more than
    HARM behind the run without U (reference_dir), which then becomes the run; metrics["adapt"] says which and
    why. Written by the main process, each file atomically."""
    from ..fileio import hold_lock
    from ..run import load_classifier
    from ..rundir import finished_run

    if is_main_rank():
        hold_lock(run.dir)  # again: the run's own save let go of it, and this writes the run once more
    a = run.metrics["adapt"]
    auto = a["auto"]
    gap = (f"a domain classifier tells U from DATA with balanced accuracy "
           f"{auto['domain']['classifier_balanced_accuracy']:.2f}, the probe's mean confidence on U "
           f"{auto['confidence']['mean']:.2f}")
    ref = reference_dir(run.dir)
    with_u, without = val_score(run.metrics), (auto.get("reference") or {}).get("val_score")
    if with_u is None or without is None:
        why = "nothing held out to check it against (--val-split 0): kept unchecked"
    else:
        why = f"on the validation split {with_u:.3f} with U against {without:.3f} without it"
    behind = with_u is not None and without is not None and with_u < without - HARM
    reason = f"auto: {AUTO_BODY} trains the body with U ({gap}); {why}"
    if behind and ref.is_dir():
        reason += f" (more than {HARM} behind): U is not used, the run is the one without it"
        reference = load_classifier(*finished_run(ref))  # its weights read and checked; now written in place of --out
        reference.dir = run.dir
        reference.metrics["adapt"] = {"requested": "auto", "method": "none", "reason": reason, "auto": auto,
                                      "unlabelled": a["unlabelled"], "seconds": a.get("seconds")}
        run = reference
        if is_main_rank():
            run.save()
    else:
        if behind:
            reason += f" (more than {HARM} behind, but the run without U is gone from {ref}: kept)"
        run.metrics["adapt"] = a | {"requested": "auto", "reason": reason}
        if is_main_rank():
            run.save_in_place()
    if is_main_rank():
        shutil.rmtree(ref, ignore_errors=True)
    log(f"adapt     {run.metrics['adapt']['method']}: {reason}")
    return run
