"""Text benchmark: embedding 10,000 sentences with MiniLM on the CPU through headstart's
feature extraction, against a plain sentence-transformers `encode` loop with the same batch
size, in the same process. Target: >= 0.9x.

    .venv/bin/python benchmarks/bench_text_embed.py [--n 10000] [--batch 64]

Sentences: the Rotten Tomatoes development reviews (movies a-m), repeated to n.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from rotten import dev_rows

from headstart.features import FeatureCache, extract
from headstart.text.inputs import Tokenizer, card_model_dir
from headstart.text.network import load_encoder_body
from headstart.zoo import get_card


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    rows = dev_rows()
    texts = [rows[i % len(rows)]["text"] for i in range(args.n)]
    card = get_card("minilm_l6")
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(card_model_dir(card)), device="cpu")
    body = load_encoder_body(card)
    dev = torch.device("cpu")
    print(f"{args.n} sentences, batch {args.batch}, {torch.get_num_threads()} threads")
    ours, plain = [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        ref = st.encode(texts, batch_size=args.batch, convert_to_numpy=True, show_progress_bar=False)
        plain.append(args.n / (time.perf_counter() - t0))
        t0 = time.perf_counter()  # tokenizing is part of headstart's cost, as it is of encode's
        tokens = Tokenizer(card.preprocessing, model_dir=card_model_dir(card))(texts)
        feats = extract(lambda: body, card.fingerprint(), card.preprocessing, tokens, card.num_features,
                        FeatureCache(None), dev, batch_size=args.batch)
        ours.append(args.n / (time.perf_counter() - t0))
        print(f"  run {r + 1}: sentence-transformers encode {plain[-1]:.1f} sentences/s, headstart {ours[-1]:.1f}")
    diff = float(np.abs(feats.array - ref).max())
    ratio = max(ours) / max(plain)
    print(f"best of {args.repeats}: headstart {max(ours):.1f} vs encode {max(plain):.1f} sentences/s -> {ratio:.2f}x "
          f"(target >= 0.9x); max |difference| of the embeddings {diff:.2e}")
    return 0 if ratio >= 0.9 and diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
