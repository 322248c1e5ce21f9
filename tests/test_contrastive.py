"""--strategy contrastive (headstart.classify.contrastive): its pair loss, its class-balanced batches, a run end to
end on tiny reviews, and a killed run resumed to the same weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import stopped_after_checkpoint
from safetensors.torch import load_file
from test_text_fit import write_reviews

import headstart
from headstart.cli import main
from headstart.classify.contrastive_task import class_balanced_batches, pair_loss
from headstart.rundir import WEIGHTS_FILE

FAST = dict(strategy="contrastive", epochs=2, batch_size=8)


def test_pair_loss_is_zero_for_perfect_pairs_and_pulls_the_right_way():
    y = torch.tensor([0, 0, 1, 1])
    perfect = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])  # same class alike, others orthogonal
    assert float(pair_loss(perfect, y)) < 1e-6
    swapped = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # every same-class pair orthogonal
    assert float(pair_loss(swapped, y)) == pytest.approx((1.0 + 0.5) / 2)  # positives all 1 off, half the negatives
    z = swapped.clone().requires_grad_(True)
    pair_loss(z, y).backward()
    # a step against the gradient makes the same-class pairs more alike
    moved = torch.nn.functional.normalize(z.detach() - 0.1 * z.grad, dim=1)
    assert float(moved[0] @ moved[1]) > 0.0
    one_class = pair_loss(torch.randn(3, 4), torch.tensor([2, 2, 2]))  # no other-class pair in the batch
    assert torch.isfinite(one_class)


def test_batches_are_class_balanced_and_use_every_text_evenly():
    labels = np.array([0] * 1000 + [1] * 8 + [2] * 8)
    rng = np.random.default_rng(0)
    batches = class_balanced_batches(labels, 12, 20, rng)
    for b in batches:  # a class of a thousand gives as many texts as one of eight
        assert np.bincount(labels[b], minlength=3).tolist() == [4, 4, 4]
    seen = np.bincount(np.concatenate(batches), minlength=len(labels))
    assert seen[1000:].min() == seen[1000:].max() == 10  # 20 batches x 4 of 8 texts: each text 10 times
    many = class_balanced_batches(np.repeat(np.arange(10), 3), 4, 5, np.random.default_rng(1))
    for b in many:  # more classes than fit: two of each of two classes, so that every batch has same-class pairs
        counts = np.bincount(np.repeat(np.arange(10), 3)[b])
        assert sorted(counts[counts > 0].tolist()) == [2, 2]
    again = class_balanced_batches(labels, 12, 20, np.random.default_rng(0))
    assert all((a == b).all() for a, b in zip(batches, again))


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    d = tmp_path_factory.mktemp("contrastive")
    return write_reviews(d / "train.csv", n=12), write_reviews(d / "test.csv", n=10, seed=1)


def test_auto_tunes_a_transformer_on_few_texts_and_fits_the_head_on_it(tmp_path, texts, capsys):
    train, test = texts
    code = main(["fit", str(train), "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "8",
                 "--val-split", "0.25"])
    out = capsys.readouterr().out
    assert code == 0
    assert "minilm_l6, contrastive: 18 train / 6 val texts" in out and "at most 64 labelled texts in the smallest class" in out
    assert "phase     pairs: the encoder's top 6 of 7 groups on the pairs of 2 x 8 class-balanced batches (28 pairs " \
        "each)" in out
    assert "phase     head: fitted on the tuned encoder's embeddings of the 18 training texts" in out
    run = headstart.load(tmp_path / "run")
    m = run.metrics
    assert [p["name"] for p in m["phases"]] == ["pairs", "head"] and m["phases"][0]["body_forward_images"] > 0
    # every pairs epoch was scored with a head fitted on the encoder as it was then
    assert all(h.get("val_balanced_accuracy") is not None for h in m["history"])
    headstart.fit(train, out=tmp_path / "probe", strategy="linear-probe")  # the pretrained encoder's weights
    tuned, before = load_file(str(tmp_path / "run" / WEIGHTS_FILE)), load_file(str(tmp_path / "probe" / WEIGHTS_FILE))
    moved = [k for k in before if k.startswith("body.") and not torch.equal(tuned[k], before[k])]
    assert moved, "the encoder did not change"
    assert headstart.evaluate(run, test)["balanced_accuracy"] >= 0.9
    assert run.predict(["a wonderful, moving film"])[0]["label"] == "fresh"


def test_a_killed_contrastive_run_resumes_to_the_same_weights(tmp_path, texts):
    train, _ = texts
    whole = headstart.fit(train, out=tmp_path / "whole", **FAST)
    with stopped_after_checkpoint(lambda s: s.global_epoch == 1):
        headstart.fit(train, out=tmp_path / "stopped", **FAST)
    resumed = headstart.resume(tmp_path / "stopped")
    # by default every labelled text trains the encoder and the head, and no figure pretends to be held out
    assert whole.metrics["n_val"] == 0 and whole.metrics["n_train"] == 24 and "validation" in whole.metrics
    assert whole.metrics["val_balanced_accuracy"] is None
    a, b = load_file(str(tmp_path / "whole" / WEIGHTS_FILE)), load_file(str(tmp_path / "stopped" / WEIGHTS_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["best_epoch"] == whole.metrics["best_epoch"]


def test_contrastive_with_unlabelled_texts_self_trains_the_last_head_and_resumes_with_them(tmp_path, texts, capsys):
    train, test = texts
    u = write_reviews(tmp_path / "u.csv", n=20, seed=5, columns=("text", "label"))  # its labels are ignored
    run = headstart.fit(train, out=tmp_path / "run", unlabelled=u, adapt="self-training", **FAST)
    a = run.metrics["adapt"]
    assert a["method"] == "self-training" and a["unlabelled"]["used"] > 0 and a["unlabelled"]["fingerprint"]
    assert headstart.load(tmp_path / "run").info["adapt"]["method"] == "self-training"
    assert headstart.evaluate(run, test)["balanced_accuracy"] >= 0.9
    with stopped_after_checkpoint(lambda s: s.global_epoch == 1):  # auto: one run, its head learns from U (no reference)
        headstart.fit(train, out=tmp_path / "stopped", unlabelled=u, adapt="auto", **FAST)
    assert "auto" not in json.loads((tmp_path / "stopped" / "headstart.json").read_text())["adapt"]
    assert not (tmp_path / ".stopped.adapt-reference").exists()
    u.write_text(u.read_text() + "one more unlabelled review,\n")
    with pytest.raises(headstart.HeadstartError, match="unlabelled texts in .* changed"):
        headstart.resume(tmp_path / "stopped")


def test_a_sentence_transformer_folder_tunes_contrastively(tmp_path, texts):
    import shutil

    from headstart.text.inputs import card_model_dir
    from headstart.zoo import get_card

    train, test = texts
    local = tmp_path / "my-encoder"
    shutil.copytree(card_model_dir(get_card("minilm_l6")), local)
    run = headstart.fit(train, model=f"hf:{local}", out=tmp_path / "run", **FAST)
    assert run.card.name == f"hf:{local}" and [p["name"] for p in run.metrics["phases"]] == ["pairs", "head"]
    assert headstart.evaluate(run, test)["balanced_accuracy"] >= 0.9


def test_auto_does_not_take_contrastive_for_a_class_of_one_text(tmp_path, texts):
    train, _ = texts
    one = tmp_path / "one.csv"
    one.write_text(train.read_text() + "a film of its own kind,meh\n")
    run = headstart.fit(one, out=tmp_path / "run", epochs=2, batch_size=8)  # auto: measured, no trials (conftest)
    assert run.metrics["strategy"] == "linear-probe" and "'meh' has a single example" in run.metrics["strategy_reason"]


def test_rank_says_auto_tunes_the_encoder_and_advise_draws_its_curve(tmp_path, capsys, monkeypatch):
    # advise's runs take the default budget: a short one, whose epochs differ with the run's size (2 passes of each
    # text in batches of 2, at least 4 steps an epoch: 2 epochs for 9 or 10 texts, 1 for 4)
    monkeypatch.setattr("headstart.classify.contrastive.PASSES", 2)
    monkeypatch.setattr("headstart.classify.contrastive.MIN_STEPS_PER_EPOCH", 4)
    monkeypatch.setattr("headstart.classify.contrastive.BATCH", 2)
    small = write_reviews(tmp_path / "small.csv", n=7)
    assert main(["rank", str(small)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("14 texts, 2 classes")
    assert "these scores read its pretrained embeddings; fit --strategy auto tunes it" in out
    import headstart.classify.fit as fit_module
    from headstart.classify import contrastive

    runs = []  # every measurement run: scored by its last epoch, validated there only, its schedule its own size's
    real = fit_module.train_body_run

    def recorded(folder, card, samples, tr, va, cfg, *a, **k):
        runs.append((len(tr), cfg.epochs, cfg.eval_every, cfg.patience))
        return real(folder, card, samples, tr, va, cfg, *a, **k)

    monkeypatch.setattr(fit_module, "train_body_run", recorded)
    report = headstart.advise(small, ["minilm_l6"], seeds=1, curve=[1, 2, 3], scratch=False,
                              curve_contrastive=True)
    assert len(runs) == 3 + 2  # auto's folds, then the curve's points of 2 and 3 per class
    assert all(ep == contrastive.default_epochs(n, contrastive.BATCH) and every == ep and patience is None
               for n, ep, every, patience in runs)
    assert sorted({(n, ep) for n, ep, _, _ in runs}) in ([(4, 1), (6, 2), (9, 2), (10, 2)], [(4, 1), (6, 2), (10, 2)])
    assert report["recommended_strategy"] == "contrastive" and "contrastive" in report["curve_labels"]
    rows = {r["per_class"]: r for r in report["learning_curve"]}
    assert "runs" not in rows[1]["contrastive"] or rows[1]["contrastive"]["runs"] == []  # a pair needs two per class
    assert len(rows[2]["contrastive"]["runs"]) == len(rows[3]["contrastive"]["runs"]) == 1
    assert rows[3]["contrastive"]["mean"] >= 0.5
