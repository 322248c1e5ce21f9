"""Text on a CUDA GPU: the encoder route's mixed precision and the word-vector route, checked
in one short command (the text issue's "AMP on GPU").

  1. MiniLM lp-ft (2 epochs) with --precision auto (bf16 autocast on the GPU) against the same
     run in fp32: held-out balanced accuracy and texts/s while the body trains.
  2. Embedding 10,000 sentences: headstart's feature extraction against a plain
     sentence-transformers `encode` loop, batch 64, same process.
  3. GloVe with a BiLSTM over it (frozen and fine-tuned embeddings) trains on the GPU, frozen
     both in bf16 and in fp32 (what --precision auto picks for word-vector networks).
A short warm-up fit per precision comes first, so that lazy CUDA loading is not timed.

A GPU machine may have no copy of the built-in cards' wheels, so the inputs travel as files,
made where the wheels are installed:

    .venv/bin/python benchmarks/gpu_text.py --prepare DIR     # ~50 MB
    python3 benchmarks/gpu_text.py --inputs DIR [--quick] [--seeds 0,1,2]   # on the GPU machine

DIR holds train.csv / test.csv (Rotten Tomatoes development rows split by movie, seed 0, as
benchmarks/rotten.py makes them), minilm/ (the all-MiniLM-L6-v2 folder, its weights stored in
fp16 to travel; they are read back as fp32) and glove.bin (the GloVe 6B 50-d vectors of the
reviews' words and of the 5,000 most frequent words, word2vec binary). --quick: 400 training
rows, 1 epoch (a dry run on a CPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import headstart
from headstart.text.network import TextOptions


def rows(path: Path, limit: int | None) -> Path:
    if limit is None:
        return path
    with open(path, newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    fresh = [r for r in got if r["label"] == "fresh"][: limit // 2]
    rotten = [r for r in got if r["label"] == "rotten"][: limit // 2]
    out = Path(tempfile.mkdtemp()) / path.name
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(got[0]))
        w.writeheader()
        w.writerows(fresh + rotten)
    return out


def prepare(out: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from rotten import by_movie_split, dev_rows, write_csv

    from headstart.text.inputs import card_model_dir
    from headstart.text.glove import builtin_glove_6b_50d
    from headstart.text.words import tokenize
    from headstart.zoo import get_card

    out.mkdir(parents=True, exist_ok=True)
    src = card_model_dir(get_card("minilm_l6"))
    shutil.rmtree(out / "minilm", ignore_errors=True)
    shutil.copytree(src, out / "minilm", ignore=shutil.ignore_patterns(
        "model.safetensors", "README.md", "data_config.json", ".gitattributes"))
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.half().contiguous() for k, v in weights.items()}, str(out / "minilm" / "model.safetensors"),
              metadata={"format": "pt"})
    all_rows = dev_rows()
    train, test = by_movie_split(all_rows, 0.3, 0)
    write_csv(train, out / "train.csv")
    write_csv(test, out / "test.csv")
    wv = builtin_glove_6b_50d()
    index = wv.index()
    words = {w for r in all_rows for w in tokenize(r["text"])}
    keep = sorted({index[w] for w in words if w in index} | set(range(5000)))  # the file's order: most frequent first
    with open(out / "glove.bin", "wb") as f:
        f.write(f"{len(keep)} {wv.dim}\n".encode())
        for i in keep:
            f.write(wv.words[i].encode() + b" " + wv.vectors[i].astype("<f4").tobytes() + b"\n")
    print(f"{out}: {len(train)} training and {len(test)} test rows, MiniLM in fp16, {len(keep):,} GloVe words")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=Path)
    ap.add_argument("--prepare", type=Path, help="write the inputs to this folder and stop")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here (after every run)")
    ap.add_argument("--seeds", default="0", help="fit's seeds, comma-separated (the split stays seed 0's)")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return 0
    if not args.inputs:
        ap.error("--inputs DIR (made with --prepare DIR) is needed")
    limit = 400 if args.quick else None
    train, test = rows(args.inputs / "train.csv", limit), rows(args.inputs / "test.csv", limit)
    minilm, glove = f"hf:{args.inputs / 'minilm'}", f"file:{args.inputs / 'glove.bin'}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}, torch {torch.__version__}")
    work = Path(tempfile.mkdtemp())
    results: dict[str, dict] = {}
    seeds = [int(s) for s in args.seeds.split(",")]

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))

    def run(name: str, model: str, **kw) -> None:
        for seed in seeds:
            t0 = time.perf_counter()
            r = headstart.fit(train, model=model, out=work / name, overwrite=True, seed=seed, no_cache=True, **kw)
            seconds = time.perf_counter() - t0
            score = headstart.evaluate(r, test, no_cache=True)["balanced_accuracy"]
            m = r.metrics
            key = name if len(seeds) == 1 else f"{name} seed {seed}"
            results[key] = {"balanced_accuracy": score, "seconds": seconds, "precision": m.get("precision"),
                            "texts_per_second": m.get("images_per_second"), "epochs_run": m.get("epochs_run")}
            print(f"{key:<29} balanced accuracy {score:.4f}  {seconds:6.1f} s  precision {m.get('precision')}  "
                  f"{m.get('images_per_second') or 0:.0f} texts/s training", flush=True)
            save()

    epochs = 1 if args.quick else 2
    # warm-up, not reported: the first CUDA kernels of each kind load lazily (tens of seconds)
    small = rows(args.inputs / "train.csv", 64)
    for precision in ("bf16", "fp32"):  # what the runs below use (auto: bf16 for MiniLM on a GPU)
        headstart.fit(small, model=minilm, out=work / "warm", overwrite=True, strategy="lp-ft", epochs=1,
                      precision=precision, no_cache=True)
        headstart.fit(small, model=glove, out=work / "warm", overwrite=True, precision=precision, no_cache=True,
                      text=TextOptions(embeddings="finetune", encoder="bilstm"))
    run("minilm lp-ft auto", minilm, strategy="lp-ft", epochs=epochs, precision="auto")
    run("minilm lp-ft fp32", minilm, strategy="lp-ft", epochs=epochs, precision="fp32")
    run("glove frozen bf16", glove, text=TextOptions(embeddings="frozen", encoder="bilstm"), precision="bf16")
    run("glove frozen fp32", glove, text=TextOptions(embeddings="frozen", encoder="bilstm"), precision="fp32")
    run("glove finetune auto", glove, text=TextOptions(embeddings="finetune", encoder="bilstm"))

    from sentence_transformers import SentenceTransformer

    from headstart.features import FeatureCache, extract
    from headstart.text.inputs import Tokenizer, card_model_dir
    from headstart.text.network import load_encoder_body
    from headstart.zoo import get_card

    with open(args.inputs / "train.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    n = 1000 if args.quick else 10_000
    texts = [texts[i % len(texts)] for i in range(n)]
    card = get_card(minilm)
    st = SentenceTransformer(str(card_model_dir(card)), device=device, model_kwargs={"dtype": torch.float32})
    body = load_encoder_body(card)
    dev = torch.device(device)
    best_st = best_ours = 0.0
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        st.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        best_st = max(best_st, n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        tokens = Tokenizer(card.preprocessing, model_dir=card_model_dir(card))(texts)
        extract(lambda: body, card.fingerprint(), card.preprocessing, tokens, card.num_features, FeatureCache(None),
                dev, batch_size=64)
        best_ours = max(best_ours, n / (time.perf_counter() - t0))
    results["embedding"] = {"headstart": best_ours, "sentence_transformers": best_st, "ratio": best_ours / best_st}
    print(f"embedding {n} sentences, batch 64, best of 3: headstart {best_ours:.0f} vs sentence-transformers encode "
          f"{best_st:.0f} sentences/s -> {best_ours / best_st:.2f}x")
    def mean(rs: list[dict], key: str) -> float:
        return sum(r[key] for r in rs) / len(rs)

    for name, mixed in (("minilm lp-ft", "auto"), ("glove frozen", "bf16")):
        a = [v for k, v in results.items() if k.startswith(f"{name} {mixed}")]
        b = [v for k, v in results.items() if k.startswith(f"{name} fp32")]
        print(f"{name} with {a[0]['precision']} vs fp32 (mean of {len(a)} seed{'s' * (len(a) > 1)}): balanced "
              f"accuracy {mean(a, 'balanced_accuracy'):.4f} vs {mean(b, 'balanced_accuracy'):.4f}, "
              f"{mean(a, 'seconds'):.1f} s vs {mean(b, 'seconds'):.1f} s")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
