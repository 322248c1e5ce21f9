"""`headstart fit`, `pretrain` and `lr-find`: the commands that train."""

from __future__ import annotations

import click

from ..auto import DEFAULT_BUDGET
from ..errors import HeadstartError
from ..options import VAL_SPLIT
from ..pretrain import DEFAULT_ARCH as PRETRAIN_ARCH, DEFAULTS as PRETRAIN
from .common import (STRATEGY_HELP, cache_options, cli, detect_options, emit_json, extract_options, fmt, json_option,
                     quiet_option, relaunch_for, set_quiet, text_options, text_options_of, training_options,
                     with_options, word_options)


RESUME_KEEPS = ("unlabelled", "adapt", "budget", "arch", "allow_download", "text_column", "label_column", "max_length",
                "skip_empty", "encoder", "embeddings", "min_count", "task", "detector", "input_size", "max_size",
                "eval_every", "skip_bad_files", "overwrite")


@cli.command()
@click.argument("data", type=click.Path(), required=False)
@click.option("--out", "-o", type=click.Path(), help="Run folder to write.")
@click.option("--strategy", default="auto", show_default=True, help=STRATEGY_HELP)
@click.option("--budget", default=None, type=float,
              help=f"--strategy auto: seconds its trials of the strategies that train the body may take "
                   f"(default {DEFAULT_BUDGET:.0f}; 0: the linear probe, no trials).")
@click.option("--unlabelled", default=None, type=click.Path(),
              help="Unlabelled examples the head learns from too: a folder of images (any depth), or texts in a "
                   "CSV/JSONL/.txt file or a folder of .txt files.")
@click.option("--adapt", default="auto", show_default=True,
              help="How the run learns from --unlabelled: auto (measured; where the strategy trains the body, the "
                   "run with U by mcc checked against the run without it), none, self-training, coral, "
                   "coral+self-training, adabn, adabn+self-training (a head on cached features); fixmatch, mcc, dann "
                   "(the body trains with U: --strategy lp-ft, finetune or partial:N).")
@with_options(training_options)
@click.option("--head-c", default=None, type=float,
              help="A head fitted on cached features (linear-probe; lp-ft's and gradual's first phase): the inverse "
                   "L2 strength C "
                   "(default: chosen by cross-validation).")
@click.option("--epochs", default=None, type=int, help="Epochs of the phases that train the body (default 15).")
@click.option("--head-epochs", default=None, type=int,
              help="Detection: epochs of the first phase of lp-ft or gradual, the backbone body frozen (default "
                   "--epochs; a classifier's head on cached features is one exact fit).")
@click.option("--lr", default=None, type=float,
              help="Learning rate of the head in phases that train the body (default 1e-3; the body's: x --body-lr-mult).")
@click.option("--l2sp", default=0.0, show_default=True, type=float, help="L2-SP: pull the body toward its pretrained weights.")
@click.option("--unfreeze-every", default=None, type=int,
              help="gradual: epochs between unfreezing steps (default 1).")
@click.option("--weight-decay", default=None, type=float, help="Phases that train the body (default 1e-4).")
@click.option("--batch-size", default=None, type=int,
              help="Images (texts) per batch in phases that train the body, across all processes (default 16 on a "
                   "CPU, 128 on a GPU).")
@click.option("--accumulate", default=1, show_default=True, type=int, help="Gradient accumulation steps.")
@click.option("--warmup", default=0.1, show_default=True, type=float, help="Share of each phase's steps spent warming up.")
@click.option("--patience", default=None, type=int,
              help="Epochs without better validation accuracy before stopping (default 5).")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              help="auto: bf16 (or fp16) on a GPU, fp32 on a CPU and for word-vector networks.")
@click.option("--processes", default=1, show_default=True, type=int,
              help="Local processes (DDP through torchrun; gloo on a CPU). Multi-node: see the README.")
@click.option("--tracker", default=None, type=click.Choice(["tensorboard", "mlflow"]),
              help="Also send metrics to a tracker (through Accelerate), logged under RUN_DIR/logs.")
@click.option("--resume", "resume_dir", default=None, type=click.Path(),
              help="Continue the stopped run in this folder (DATA and --model may be left out).")
@click.option("--overwrite", is_flag=True, help="Replace --out even if it is not a headstart run.")
@with_options(extract_options)
@with_options(text_options)
@with_options(word_options)
@with_options(detect_options)
@with_options(cache_options)
@json_option
@quiet_option
@click.pass_context
def fit(ctx: click.Context, data: str | None, out: str | None, strategy: str, budget: float | None,
        unlabelled: str | None, adapt: str, model: str | None, arch: str | None,
        allow_download: bool, head: str, hidden: int, dropout: float, body_lr_mult: float, layer_decay: float,
        bn: str, augment: str, seed: int, val_split: float, no_class_balance: bool, head_c: float | None,
        epochs: int | None, head_epochs: int | None, lr: float | None, l2sp: float, unfreeze_every: int | None,
        weight_decay: float | None,
        batch_size: int | None, accumulate: int, warmup: float, patience: int | None, precision: str,
        processes: int, tracker: str | None, resume_dir: str | None, overwrite: bool,
        extract_batch_size: int | None, workers: int | None, text_column: str, label_column: str,
        max_length: int | None, skip_empty: bool, encoder: str, embeddings: str, min_count: int,
        task: str, detector: str, input_size: int | None, max_size: int | None, eval_every: int | None,
        cache_dir: str | None, no_cache: bool, skip_bad_files: bool, device: str | None, as_json: bool,
        quiet: bool) -> None:
    """Transfer a pretrained model to the labelled images or texts in DATA.

    Images: a folder with one subfolder of images per class, or a CSV with path,label
    columns (paths relative to the CSV). Texts: a CSV or JSONL file with text,label
    columns, or a folder with one subfolder of .txt files per class.

    Detection (--task detect, chosen by itself for such DATA): a COCO JSON file (or a folder
    holding annotations.json and images/) or a Pascal VOC folder (Annotations/, JPEGImages/);
    --model is a zoo card (its ImageNet body gets new detection heads) or a torchvision
    detector checkpoint file (its box and mask predictors are replaced for the new classes).
    """
    from ..runtime import is_main_rank

    set_quiet(quiet or as_json or not is_main_rank())
    relaunch_for(ctx, processes)
    from .. import api

    if resume_dir:
        given_names = ("strategy", "head", "hidden", "dropout", "body_lr_mult", "layer_decay", "bn", "augment", "seed",
                       "val_split", "head_c", "epochs", "head_epochs", "lr", "l2sp", "unfreeze_every",
                       "weight_decay", "batch_size", "accumulate", "warmup", "patience", "precision")
        from click.core import ParameterSource

        given = {n: ctx.params[n] for n in given_names
                 if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}
        # what shaped the run's data and its choices: --resume keeps the run's own, so giving one is refused
        kept = [f"--{n.replace('_', '-')}" for n in RESUME_KEEPS if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
        if kept:
            raise HeadstartError(f"--resume '{resume_dir}' continues the run with the settings it started with (its own "
                                 f"DATA, unlabelled examples, text and data options); {', '.join(kept)} cannot change "
                                 "them: drop them, or start a new run with --out")
        if ctx.get_parameter_source("no_class_balance") == ParameterSource.COMMANDLINE:
            given["class_balance"] = not no_class_balance
        explicit_model = model if ctx.get_parameter_source("model") == ParameterSource.COMMANDLINE else None
        run = api.resume(resume_dir, data, explicit_model, cache_dir=cache_dir, no_cache=no_cache, device=device,
                         num_workers=workers, tracker=tracker, given=given)
    else:
        if data is None:
            raise click.UsageError("Missing argument 'DATA'.", ctx)
        if out is None:
            raise click.UsageError("Missing option '--out' (the run folder to write).", ctx)
        run = api.fit(data, model=model, out=out, strategy=strategy, head=head, hidden=hidden, dropout=dropout,
                      epochs=epochs, head_epochs=head_epochs, lr=lr, head_c=head_c, body_lr_mult=body_lr_mult,
                      layer_decay=layer_decay, l2sp=l2sp, unfreeze_every=unfreeze_every, weight_decay=weight_decay,
                      batch_size=batch_size, accumulate=accumulate, warmup=warmup, patience=patience,
                      augment=augment, bn=bn, precision=precision, seed=seed, val_split=val_split,
                      class_balance=not no_class_balance, arch=arch, cache_dir=cache_dir, no_cache=no_cache,
                      skip_bad_files=skip_bad_files, overwrite=overwrite, allow_download=allow_download,
                      device=device, extract_batch_size=extract_batch_size, num_workers=workers, tracker=tracker,
                      text=text_options_of(text_column, label_column, max_length, skip_empty, encoder, embeddings, min_count),
                      task=task, detector=detector, input_size=input_size, max_size=max_size, eval_every=eval_every,
                      budget=budget, unlabelled=unlabelled, adapt=adapt)
    if is_main_rank():
        _print_run(run, as_json)


def _print_run(run, as_json: bool) -> None:
    """What fit and pretrain print: the run's metrics, as lines or JSON."""
    m = run.metrics
    if as_json:
        emit_json(m)
        return
    if m.get("task") == "detect":
        _print_detect_run(run)
        return
    unit = "texts" if run.modality == "text" else "images"
    split = (f"{m['n_train']} {unit} (all train the {'encoder and the ' if m['strategy'] == 'contrastive' else ''}head)"
             if "validation" in m else
             f"{m['n_train']} train / {m['n_val']} val {unit}")
    click.echo(f"{m['model']}, {m['strategy']}: {split}, {m['n_classes']} classes")
    if m.get("text"):
        t = m["text"]
        words = (f", vocabulary {t['vocabulary']:,} words, {100 * t['token_coverage']:.1f}% of tokens with a vector"
                 if t.get("vocabulary") else "")
        click.echo(f"text      {t['truncated']} truncated at {t['max_length']} tokens{words}")
    click.echo(f"strategy  {m['strategy_reason']}")
    if m.get("cache_hit") is not None:
        rate = m.get("extract_images_per_second")
        feats = (f"cache hit, {m['extract_seconds']:.2f}s" if m["cache_hit"]
                 else f"{m['extract_seconds']:.1f}s" + (f", {rate} {unit}/s" if rate else ""))
        click.echo(f"features  {feats}")
    for p in m["phases"]:
        if p["from_cache"] and "iterations" in p:  # a linear probe's exact fit
            click.echo(f"phase     head: fitted on cached features of all {m['n_train']} {unit}, C {m['head_c']:.3g} "
                       f"({m['validation']}), {p['seconds']:.2f}s")
            continue
        if p["from_cache"] and m["strategy"] == "contrastive":
            click.echo(f"phase     {p['name']}: fitted on the tuned encoder's embeddings of the {m['n_train']} training "
                       f"{unit}, {p['seconds']:.1f}s")
            continue
        if p.get("pairs_per_step"):
            click.echo(f"phase     {p['name']}: the encoder's top {p['trainable_groups']} of {p['groups']} groups on the "
                       f"pairs of {p['epochs_run']} x {p['steps_per_epoch']} class-balanced batches "
                       f"({p['pairs_per_step']} pairs each), {p['seconds']:.1f}s")
            continue
        if p["from_cache"]:  # lp-ft's (gradual's) head, fitted on the training split before the body trains
            c = next((h.get("head_c") for h in m.get("history", []) if h.get("phase") == p["phase"]), None)
            click.echo(f"phase     {p['name']}: fitted on cached features of the {m['n_train']} training {unit}"
                       + (f", C {c:.3g}" if c else "") + f", {p['seconds']:.1f}s")
            continue
        what = "head on cached features" if p["from_cache"] else f"head + top {p['trainable_groups']} of {p['groups']} groups"
        stop = ", stopped early" if p["stopped_early"] else ""
        click.echo(f"phase     {p['name']}: {what}, {p['epochs_run']} of {p['epochs_planned']} epochs{stop}, "
                   f"{p['seconds']:.1f}s")
    if m.get("images_per_second"):
        click.echo(f"speed     {m['images_per_second']} {unit}/s while training the body")
    best = m.get("best") or {}
    where = (f" ({m['validation']})" if m.get("validation") else
             f" (phase {best['phase']}, epoch {best['phase_epoch']})" if best.get("phase_epoch") else "")
    click.echo(f"val       accuracy {fmt(m['val_accuracy'])}, balanced {fmt(m['val_balanced_accuracy'])}{where}")
    if m.get("adapt"):
        a = m["adapt"]
        used = f"{a['unlabelled']['used']:,} unlabelled {unit}" + (
            f", {a['pseudo_labelled']:,} of them labelled by the head" if a.get("pseudo_labelled") else "")
        click.echo(f"adapt     {a['method']} ({used}), {a['seconds']:.1f}s: {a['reason']}")
    click.echo(f"run       {run.dir}")


def _print_detect_run(run) -> None:
    m = run.metrics
    from ..detection.model import detector_name

    kind = detector_name(m["detector"])
    click.echo(f"{kind} from {m['model']}, {m['strategy']}: {m['n_train']} train / {m['n_val']} val images, "
               f"{m['n_classes']} classes, {m['input_size']} px")
    click.echo(f"strategy  {m['strategy_reason']}")
    if m["start"].get("reused_classes"):
        click.echo(f"reused    the source's rows for {', '.join(m['start']['reused_classes'])}")
    for p in m["phases"]:
        cached = f", first {p['frozen_units_cached']} body units cached" if p.get("frozen_units_cached") else ""
        click.echo(f"phase     {p['name']}: heads + top {p['trainable_groups']} of {p['groups']} backbone groups"
                   f"{cached}, {p.get('epochs_run', 0)} epochs, {p['seconds']:.1f}s")
    if m.get("train_images_per_second"):
        click.echo(f"speed     {m['train_images_per_second']} images/s while training")
    if m.get("val_map") is not None:
        click.echo(f"val       mAP {fmt(m['val_map'])}, mAP@.5 {fmt(m['val_map_50'])} (epoch {m['best_epoch']})")
    click.echo(f"run       {run.dir}")


@cli.command()
@click.argument("data", type=click.Path(), required=False)
@click.option("--arch", default=PRETRAIN_ARCH, show_default=True,
              help="Any timm or torchvision architecture, trained from random weights.")
@click.option("--out", "-o", type=click.Path(), help="Folder to write: a run folder and a model card.")
@click.option("--epochs", default=PRETRAIN["epochs"], show_default=True, type=int)
@click.option("--input-size", default=None, type=int,
              help="Input size in pixels (default: DATA's median side rounded up to a multiple of 32, at most 224).")
@click.option("--lr", default=PRETRAIN["lr"], show_default=True, type=float)
@click.option("--batch-size", default=PRETRAIN["batch_size"], show_default=True, type=int,
              help="Images per batch, across all processes.")
@click.option("--weight-decay", default=PRETRAIN["weight_decay"], show_default=True, type=float)
@click.option("--patience", default=PRETRAIN["patience"], show_default=True, type=int,
              help="Epochs without better validation accuracy before stopping.")
@click.option("--augment", default=PRETRAIN["augment"], show_default=True, type=click.Choice(["crop-flip", "crop", "none"]))
@click.option("--val-split", default=PRETRAIN["val_split"], show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16", "fp16"]))
@click.option("--processes", default=1, show_default=True, type=int, help="Local processes (DDP, as in fit).")
@click.option("--tracker", default=None, type=click.Choice(["tensorboard", "mlflow"]))
@click.option("--resume", "resume_dir", default=None, type=click.Path(), help="Continue the stopped pretrain in this folder.")
@click.option("--overwrite", is_flag=True, help="Replace --out even if it is not a headstart run.")
@click.option("--workers", default=None, type=int, help="Image-decoding worker processes.")
@click.option("--skip-bad-files", is_flag=True, help="Leave out files that are not readable images.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available).")
@json_option
@quiet_option
@click.pass_context
def pretrain(ctx: click.Context, data: str | None, arch: str, out: str | None, epochs: int, input_size: int | None,
             lr: float, batch_size: int, weight_decay: float, patience: int, augment: str, val_split: float, seed: int,
             precision: str, processes: int, tracker: str | None, resume_dir: str | None, overwrite: bool,
             workers: int | None, skip_bad_files: bool, device: str | None, as_json: bool, quiet: bool) -> None:
    """Train your own source model from random weights on labelled images in DATA.

    DIR (--out) becomes a run folder and a model card: transfer from it with
    `headstart fit SMALL_DATA --model file:DIR`, or add it to your zoo with
    `headstart models add NAME --from DIR`.
    """
    from ..pretrain import pretrain as run_pretrain, resume_pretrain
    from ..runtime import is_main_rank

    set_quiet(quiet or as_json or not is_main_rank())
    relaunch_for(ctx, processes)
    if resume_dir:
        run = resume_pretrain(resume_dir, device=device, num_workers=workers, tracker=tracker)
    else:
        if data is None:
            raise click.UsageError("Missing argument 'DATA'.", ctx)
        if out is None:
            raise click.UsageError("Missing option '--out' (the folder to write).", ctx)
        run = run_pretrain(data, arch, out, epochs=epochs, input_size=input_size, lr=lr, batch_size=batch_size,
                           weight_decay=weight_decay, patience=patience, augment=augment, val_split=val_split,
                           seed=seed, precision=precision, overwrite=overwrite, device=device, num_workers=workers,
                           tracker=tracker, skip_bad_files=skip_bad_files)
    if is_main_rank():
        _print_run(run, as_json)
        if not as_json:
            click.echo(f"next      headstart fit SMALL_DATA --model file:{run.dir} --out RUN_DIR   "
                       f"(or: headstart models add NAME --from {run.dir})")


@cli.command("lr-find")
@click.argument("data", type=click.Path())
@click.option("--strategy", default="finetune", show_default=True, help=STRATEGY_HELP)
@with_options(training_options)
@click.option("--start-lr", default=1e-7, show_default=True, type=float)
@click.option("--end-lr", default=1.0, show_default=True, type=float)
@click.option("--steps", default=100, show_default=True, type=int, help="Mini-batches in the sweep.")
@click.option("--batch-size", default=None, type=int, help="Images per batch (default 16 on a CPU, 128 on a GPU).")
@click.option("--plot", default="lr-find.png", show_default=True, type=click.Path(dir_okay=False),
              help="Where to draw loss against learning rate (PNG).")
@click.option("--workers", default=None, type=int)
@with_options(cache_options)
@json_option
@quiet_option
def lr_find(data: str, strategy: str, model: str, arch: str | None, allow_download: bool, head: str, hidden: int,
            dropout: float, body_lr_mult: float, layer_decay: float, bn: str, augment: str, seed: int,
            val_split: float, no_class_balance: bool, start_lr: float, end_lr: float, steps: int,
            batch_size: int | None, plot: str, workers: int | None, cache_dir: str | None, no_cache: bool,
            skip_bad_files: bool, device: str | None, as_json: bool, quiet: bool) -> None:
    """The learning-rate range test for the first phase that trains the body: loss against an
    exponentially growing learning rate, and a suggestion for `fit --lr`."""
    set_quiet(quiet or as_json)
    from ..lr_find import lr_find as api_lr_find, text_plot

    r = api_lr_find(data, model=model, strategy=strategy, arch=arch, allow_download=allow_download, head=head,
                    hidden=hidden, dropout=dropout, body_lr_mult=body_lr_mult, layer_decay=layer_decay, bn=bn,
                    augment=augment, seed=seed, val_split=VAL_SPLIT if val_split is None else val_split,
                    class_balance=not no_class_balance,
                    start_lr=start_lr, end_lr=end_lr, steps=steps, batch_size=batch_size, plot=plot,
                    num_workers=workers, cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files,
                    device=device)
    if as_json:
        emit_json(r)
        return
    click.echo(text_plot(r["lrs"], r["smoothed_losses"], r["suggested_lr"]))
    click.echo(f"phase {r['phase']} of {r['strategy']} ({r['trainable_groups']} body groups train), "
               f"{len(r['lrs'])} steps; lowest loss at lr {r['min_loss_lr']:.2g}")
    click.echo(f"suggested: headstart fit ... --strategy {r['strategy']} --lr {r['suggested_lr']:.2g}"
               + (f"   (plot: {r['plot']})" if r.get("plot") else ""))
