"""One SetFit run with its defaults, for benchmarks/bench_fewshot.py (run by a Python that has setfit,
never by headstart's own environment): reads a JSON job {"train": [[text, label], ...], "test": [...],
"model": FOLDER, "seed": N} from argv[1], writes {"balanced_accuracy", "seconds"} to argv[2]. The clock
covers what headstart's clock covers in the same benchmark: loading the model, training, predicting the
test texts."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    t0 = time.perf_counter()
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import balanced_accuracy_score

    train = Dataset.from_dict({"text": [t for t, _ in job["train"]], "label": [y for _, y in job["train"]]})
    model = SetFitModel.from_pretrained(job["model"])
    # everything but where it writes its checkpoints (a folder beside the job) is SetFit's default
    args = TrainingArguments(seed=job["seed"], report_to="none",
                             output_dir=str(Path(sys.argv[1]).parent / "setfit-checkpoints"))
    trainer = Trainer(model=model, args=args, train_dataset=train)
    trainer.train()
    pred = model.predict([t for t, _ in job["test"]])
    seconds = time.perf_counter() - t0
    acc = balanced_accuracy_score([y for _, y in job["test"]], [int(p) for p in pred])
    Path(sys.argv[2]).write_text(json.dumps({"balanced_accuracy": float(acc), "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
