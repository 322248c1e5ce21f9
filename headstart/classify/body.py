"""A classifier run that trains the body, on the engine (headstart.engine) with the task
classify.task.ClassificationTask, and --resume of such a run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..cache import Features
from ..console import log
from ..data.images import ImageSamples
from ..data.unlabelled import Unlabelled, read_unlabelled
from ..errors import HeadstartError
from ..heads import HeadSpec
from ..rundir import RUN_FILE, run_info
from ..strategies import Strategy
from ..text.options import TextOptions
from ..zoo import ModelCard

if TYPE_CHECKING:
    import torch

    from ..run import Run
    from ..text.inputs import Tokenized


def text_metrics(tokens: Tokenized, network: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"max_length": tokens.max_length, "truncated": tokens.truncated}
    if network:
        out.update(vocabulary=len(network["vocabulary"]["words"]), token_coverage=network["token_coverage"],
                   vocab_covered=network["vocab_covered"], encoder=network["encoder"])
    return out


def train_body_run(out_dir: Path, card: ModelCard, samples: ImageSamples, train_idx: np.ndarray, val_idx: np.ndarray,
                cfg, reason: str, get_features: Callable[[], Features], dev: torch.device,
                body_factory: Callable[[], torch.nn.Module], num_workers: int | None, tracker: str | None,
                fresh: bool, t_start: float, skip_bad_files: bool = False, tokens: Tokenized | None = None,
                text_info: dict[str, Any] | None = None, num_features: int | None = None, watch: Any = None,
                unlabelled: tuple[Unlabelled, str] | None = None, auto: dict[str, Any] | None = None) -> Run:
    """Strategies that train the body: the engine (headstart.engine) with classify.task, checkpointed in out_dir. `watch`:
    an auto trial (headstart.auto.Trial), which sees every epoch's held-out predictions and may stop
    the run (TrialStopped); a trial's run returns None. `unlabelled`: U's images and the method (fixmatch,
    mcc) by which the body phases learn from them too (classify.adapt_task); `auto`: what --adapt auto measured before
    it chose that method (classify.unlabelled.body_auto), the run then settled against the run without U."""
    from ..engine import Callback, Engine, make_accelerator, seed_everything
    from ..engine.accelerator import open_run
    from ..surgery import TransferModel
    from .task import ClassificationTask, finish, start_record

    acc = make_accelerator(cfg, out_dir, tracker, cpu=dev.type == "cpu")
    adapt = None
    if unlabelled is not None:
        u, method = unlabelled
        adapt = {"method": method, "unlabelled": u.record() | {"fingerprint": u.fingerprint()}}
        if auto is not None:
            adapt["auto"] = auto
    record = start_record(card, samples, cfg, reason, skip_bad_files, text_info) if fresh else None
    if record is not None and adapt is not None:
        record["adapt"] = adapt
    open_run(acc, out_dir, record, cfg, tracker)
    seed_everything(cfg.seed)  # the new head's initial weights
    model = TransferModel(body_factory(), HeadSpec.from_dict(cfg.head).build(num_features or card.num_features,
                                                                              len(samples.classes)))
    feats: list[Features] = []

    def features() -> Features:  # only head-only phases need them; the main process fills the cache first
        if not feats:
            with acc.main_process_first():
                feats.append(get_features())
        return feats[0]

    class Watched(Callback):
        """An auto trial as the engine's callback: it sees each epoch's held-out predictions and whether
        the epoch trained the body, and stops the run (TrialStopped) by returning False."""

        def on_epoch_end(self, engine: Engine, record: dict[str, Any]) -> None:
            pred = engine.val_predictions
            if pred is not None and not watch(engine.state.global_epoch, pred, not record.get("head_only")):
                from ..auto import TrialStopped

                raise TrialStopped()

    contrastive = Strategy.parse(cfg.strategy).kind == "contrastive"
    if contrastive:
        from .contrastive_task import ContrastiveTask

        task: ClassificationTask = ContrastiveTask(card, samples, train_idx, val_idx, features, cfg, model, num_workers,
                                                   tokens=tokens, unlabelled=unlabelled)
    elif unlabelled is not None:
        from .adapt_task import AdaptingTask

        task = AdaptingTask(card, samples, train_idx, val_idx, features, cfg, model, num_workers,
                            unlabelled=unlabelled[0].items, method=unlabelled[1],
                            num_features=num_features or card.num_features)
    else:
        task = ClassificationTask(card, samples, train_idx, val_idx, features, cfg, model, num_workers, tokens=tokens)
    engine = Engine(out_dir, task, cfg, acc, callbacks=[Watched()] if watch is not None else ())
    if not fresh:
        engine.resume()
    engine.run()
    if watch is not None:  # an auto trial: its predictions are what it leaves (headstart.auto.Trial)
        return None  # type: ignore[return-value]
    s = engine.state
    best = next((h for h in s.history if h["epoch"] == s.best_epoch), s.history[-1] if s.history else {})
    best_phase = s.phases[best["phase"]]["name"] if best and best.get("phase", 99) < len(s.phases) else None
    extracted = feats[0] if feats else None
    metrics: dict[str, Any] = {
        "model": card.name,
        "strategy": cfg.strategy,
        "strategy_reason": reason,
        "head": cfg.head["kind"],
        "val_accuracy": best.get("val_accuracy"),
        "val_balanced_accuracy": best.get("val_balanced_accuracy"),
        "val_loss": best.get("val_loss"),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "n_classes": len(samples.classes),
        "class_counts": samples.counts(),
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "epochs_run": s.global_epoch,
        "best_epoch": s.best_epoch,
        "best": {"phase": best_phase, "phase_epoch": best.get("phase_epoch")} if best else None,
        "stopped_early": s.stopped_early,
        "extract_seconds": round(extracted.seconds, 3) if extracted else 0.0,
        "train_seconds": round(sum(p["seconds"] for p in s.phases), 3),
        "cache_hit": extracted.cache_hit if extracted else None,
        "images_per_second": round(s.images / s.body_seconds, 2) if s.body_seconds else None,
        "phases": s.phases,
        "device": str(acc.device),
        "processes": acc.num_processes,
        "precision": acc.mixed_precision,
        "history": s.history,
        "config": cfg.to_dict(),
        "headstart": __version__,
        "total_seconds": round(time.perf_counter() - t_start, 3),
    }
    if tokens is not None:
        metrics["text"] = text_metrics(tokens, (text_info or {}).get("network"))
    if not len(val_idx):
        metrics["validation"] = "none held out (--val-split 0), the last epoch is the run: score it with headstart evaluate"
    if adapt is not None and contrastive:  # the head learned from U on the tuned embeddings
        metrics["adapt"] = adapt | task.adapted  # type: ignore[attr-defined]
    elif adapt is not None:
        from . import adapt_task

        seen = sum(ph["epochs_run"] * ph.get("unlabelled_per_epoch", 0) for ph in s.phases)
        metrics["adapt"] = adapt | {
            "reason": f"chosen with --adapt {adapt['method']}: the body phases learn from U too", "unlabelled_seen": seen,
            "seconds": round(sum(ph["seconds"] for ph in s.phases if "unlabelled_per_epoch" in ph), 2),
            "settings": {"threshold": adapt_task.THRESHOLD, "weight": adapt_task.WEIGHT,
                         "temperature": adapt_task.TEMPERATURE, "per_labelled": adapt_task.UNLABELLED_PER_LABELLED}}
    info = {k: v for k, v in (run_info(out_dir) or {}).items()}
    info.update(strategy=cfg.strategy, strategy_reason=reason, data=samples.source)
    if text_info:
        info["text"] = text_info
    auto = (info.get("adapt") or {}).get("auto")  # as the run started (--resume: as headstart.json kept it)
    if auto is not None and "adapt" in metrics:
        from .unlabelled import settle

        metrics["adapt"]["auto"] = auto
        return settle(finish(engine, info, metrics))
    return finish(engine, info, metrics)


def resume_classifier(d: Path, info: dict[str, Any], data: str | Path | None, model: str | None, *,
                      cache_dir: str | Path | None, no_cache: bool, device: str | None, num_workers: int | None,
                      tracker: str | None, given: dict[str, Any] | None, t_start: float) -> Run:
    """headstart.resume for a classifier run (api.resume checked that it is one, stopped)."""
    from ..engine import TrainConfig
    from .prepare import prepare

    cfg = TrainConfig.from_dict(info["config"], where=f"run '{d}': {RUN_FILE}")
    card = ModelCard.from_dict(info["card"])
    refuse_other_inputs(d, info, data, given, model, card.name)
    source = data if data is not None else info["data"]["source"]
    text_info = info.get("text")
    p = prepare(source, card, val_split=cfg.val_split, seed=cfg.seed, cache_dir=cache_dir, no_cache=no_cache,
                skip_bad_files=info["data"].get("skip_bad_files", False), device=device, num_workers=num_workers,
                text=TextOptions(**text_info["options"]) if text_info else None)
    if p.samples.fingerprint() != info["data"]["fingerprint"]:
        raise HeadstartError(f"--resume '{d}': the files in {source} changed since the run started "
                             f"({len(p.samples)} files now, {info['data']['n']} then); start a new run with --out")
    unlabelled = None
    if info.get("adapt"):  # U again, as the run read it (classify.adapt_task, classify.contrastive_task)
        a = info["adapt"]
        was = a["unlabelled"]
        columns = {k: text_info["options"][k] for k in ("text_column", "label_column")} if text_info else {}
        u = read_unlabelled(was["source"], p.samples.modality, p.samples, len(p.samples.classes),
                            skip_bad_files=was.get("unreadable_left_out", 0) > 0, **columns)
        if u.fingerprint() != was.get("fingerprint"):
            raise HeadstartError(f"--resume '{d}': the unlabelled {p.samples.modality}s in {was['source']} changed "
                                 f"since the run started ({len(u.items)} now, {was['used']} then); start a new run "
                                 "with --out")
        unlabelled = (u, a["method"])
    log(f"resuming {d} ({cfg.strategy})")
    return train_body_run(d, card, p.samples, p.train_idx, p.val_idx, cfg, info.get("strategy_reason", ""), p.features,
                       p.device, p.body, num_workers, tracker, fresh=False, t_start=t_start, tokens=p.tokens,
                       text_info=text_info, num_features=p.num_features, unlabelled=unlabelled)


def refuse_other_inputs(d: Path, info: dict[str, Any], data: str | Path | None, given: dict[str, Any] | None,
                         model: str | None = None, run_model: str | None = None) -> None:
    """--resume continues a run with its own settings: DATA, --model or a training option that
    differs from the run's is refused, all of them named in one line."""
    differences = []
    if model is not None and run_model is not None and model != run_model:
        differences.append(f"--model {model} (the run used {run_model})")
    saved_head = info["config"].get("head") or {}
    for key, value in (given or {}).items():
        saved = saved_head.get("kind" if key == "head" else key) if key in ("head", "hidden", "dropout") \
            else info["config"].get(key)
        if value is not None and value != saved:  # saved None: the run's default (--head-c: cross-validated)
            differences.append(f"--{key.replace('_', '-')} {value} (the run used {'its default' if saved is None else saved})")
    if data is not None and Path(data).expanduser().resolve() != Path(info["data"]["source"]).resolve():
        differences.append(f"DATA {data} (the run used {info['data']['source']})")
    if differences:
        raise HeadstartError(f"--resume '{d}' refuses to continue with other inputs: {'; '.join(differences)}; "
                             "drop those options, or start a new run with --out")
