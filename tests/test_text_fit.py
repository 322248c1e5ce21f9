"""Text transfer end to end: the MiniLM encoder and GloVe word vectors through fit, evaluate,
predict, rank and advise, on a tiny review dataset; and what bad text input gets."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.cli import main
from headstart.text.network import TextOptions

POS = ["a wonderful, moving film", "great acting and a clever script", "i loved every minute", "brilliant and funny",
       "a joy to watch", "superb direction", "charming and warm", "an excellent story"]
NEG = ["a dull, boring mess", "terrible acting and a stupid plot", "i hated it", "awful and tedious",
       "a waste of time", "poorly directed", "lifeless and cold", "a bad story badly told"]


def write_reviews(path: Path, n: int = 24, seed: int = 0, columns=("text", "label")) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for _ in range(n):
            w.writerow([f"{rng.choice(POS)}, {rng.choice(POS)}", "fresh"])
            w.writerow([f"{rng.choice(NEG)}; {rng.choice(NEG)}", "rotten"])
    return path


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    return write_reviews(tmp_path_factory.mktemp("text") / "reviews.csv")


@pytest.fixture(scope="module")
def reviews_test(tmp_path_factory) -> Path:
    return write_reviews(tmp_path_factory.mktemp("text-test") / "test.csv", n=10, seed=1)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_minilm_body_matches_sentence_transformers():
    """The built-in card's encoder + pooling gives sentence-transformers' own embeddings."""
    from sentence_transformers import SentenceTransformer

    from headstart.features import FeatureCache, extract
    from headstart.surgery import depth_groups
    from headstart.text.inputs import Tokenizer, card_model_dir
    from headstart.text.network import load_encoder_body
    from headstart.zoo import get_card

    card = get_card("minilm_l6")
    texts = ["A short one.", "A much longer sentence, with more words in it than the first.", "ok", "Üñíçødé text"]
    ref = SentenceTransformer(str(card_model_dir(card)), device="cpu").encode(texts, convert_to_numpy=True)
    body = load_encoder_body(card)
    tokens = Tokenizer(card.preprocessing, model_dir=card_model_dir(card))(texts)
    got = extract(lambda: body, card.fingerprint(), card.preprocessing, tokens, card.num_features, FeatureCache(None),
                  torch.device("cpu"), batch_size=3).array
    assert np.abs(got - ref).max() < 1e-5
    groups = depth_groups(body)
    assert len(groups) == 7 and all(n.startswith("encoder.embeddings") for n in groups[0])
    assert all(n.startswith(f"encoder.encoder.layer.{i - 1}.") for i in range(1, 7) for n in groups[i])


def test_minilm_linear_probe_fit_evaluate_predict(tmp_path, reviews, reviews_test, capsys):
    out = tmp_path / "run"
    code, stdout, err = cli(capsys, "fit", reviews, "--out", out, "--strategy", "linear-probe")
    assert code == 0, err
    assert "minilm_l6, linear-probe" in stdout and "texts" in stdout  # text DATA picks the text model by default
    # cross-validation on all 48 texts picked C and measured the head; then it was fitted on all of them
    assert "48 texts (all train the head)" in stdout and "(5-fold cross-validation)" in stdout
    run = headstart.load(out)
    assert run.modality == "text" and run.classes == ("fresh", "rotten")
    res = headstart.evaluate(out, reviews_test)
    assert res["accuracy"] >= 0.9 and not res["cache_hit"]
    assert headstart.evaluate(out, reviews_test)["cache_hit"]
    preds = run.predict(["what a wonderful film, i loved it", "boring, awful and tedious"], top_k=1)
    assert [p["label"] for p in preds] == ["fresh", "rotten"] and preds[0]["text"].startswith("what")
    txt = tmp_path / "one.txt"
    txt.write_text("a joy to watch, superb", encoding="utf-8")
    code, stdout, _ = cli(capsys, "predict", out, txt, "--json")
    assert code == 0 and json.loads(stdout)[0]["label"] == "fresh"


def test_linear_probe_uses_every_example(tmp_path, reviews):
    """No example is held out of the probe: its folds pick C and measure it, whatever --val-split says
    (that split is for phases that train the body)."""
    run = headstart.fit(reviews, out=tmp_path / "lp", strategy="linear-probe")
    m = run.metrics
    assert m["n_train"] == 48 and m["n_val"] == 0 and m["cv"]["examples"] == 48
    again = headstart.fit(reviews, out=tmp_path / "all", strategy="linear-probe", val_split=0.0)
    assert again.metrics["val_accuracy"] == m["val_accuracy"] and again.metrics["head_c"] == m["head_c"]


def test_minilm_lp_ft_trains_the_encoder(tmp_path, reviews):
    run = headstart.fit(reviews, model="minilm_l6", out=tmp_path / "lpft", strategy="lp-ft", epochs=1,
                        batch_size=16)
    phases = run.metrics["phases"]
    assert [p["name"] for p in phases] == ["head", "finetune"]
    assert phases[0]["body_forward_images"] == 0 and phases[1]["body_forward_images"] > 0
    assert phases[1]["trainable_groups"] == phases[1]["groups"] == 7
    assert run.metrics["config"]["body_lr_mult"] == 0.05  # the encoder at 5e-5, as usual for BERT-like encoders
    base = headstart.load(tmp_path / "lpft").model.body.state_dict()
    from headstart.text.network import load_encoder_body
    from headstart.zoo import get_card

    pre = load_encoder_body(get_card("minilm_l6")).state_dict()
    assert any(not torch.equal(base[k], pre[k]) for k in pre)  # the encoder moved


def _embedding(run) -> torch.Tensor:
    return run.model.body.embedding.weight.detach().clone()


def test_glove_embeddings_frozen_finetune_and_staged(tmp_path, reviews):
    from headstart.text.network import build_word_body, word_vectors
    from headstart.text.words import UNK, Vocabulary
    from headstart.zoo import get_card

    card = get_card("glove_6b_50d")
    runs = {}
    for emb in ("frozen", "finetune", "frozen-then-finetune"):
        runs[emb] = headstart.fit(reviews, model="glove_6b_50d", out=tmp_path / emb, epochs=2,
                                  text=TextOptions(embeddings=emb, encoder="cnn"))
    m = runs["frozen"].metrics
    assert m["strategy"] == "partial:1" and m["text"]["token_coverage"] > 0.95 and m["text"]["encoder"] == "cnn"
    assert runs["frozen"].info["config"]["precision"] == "fp32"  # --precision auto: fp32 for word vectors, GPU too
    # the start: the same vocabulary and seed give the same initial embeddings as the run was built from
    vocab = Vocabulary.from_dict(runs["frozen"].info["text"]["network"]["vocabulary"])
    start, _ = build_word_body(card, vocab, "cnn", 100, 0)
    start_emb = start.embedding.weight.detach()
    wv = word_vectors(card)
    assert torch.allclose(start_emb[vocab.words.index("wonderful")], torch.from_numpy(wv.vectors[wv.index()["wonderful"]]))
    assert torch.equal(_embedding(runs["frozen"]), start_emb)  # frozen: unchanged
    assert not torch.equal(_embedding(runs["finetune"]), start_emb)  # finetune: moved
    assert [p["name"] for p in runs["frozen-then-finetune"].metrics["phases"]] == ["first group frozen", "finetune"]
    assert not torch.equal(_embedding(runs["frozen-then-finetune"]), start_emb)
    assert start.new_words.weight[int(start.new_slot[UNK])].abs().sum() > 0  # unknown words: not zeros
    # reloaded runs predict as the fitted ones
    again = headstart.load(tmp_path / "finetune")
    texts = ["a joy to watch", "a waste of time"]
    assert [p["label"] for p in again.predict(texts)] == [p["label"] for p in runs["finetune"].predict(texts)]


def test_glove_words_without_a_vector_train_while_the_vectors_stay_frozen(tmp_path):
    """Words missing from the vectors have rows of their own: a compound starts at the average of
    its parts' vectors, the others at random; they train with --embeddings frozen while every
    pretrained row stays as it was; the run reloads with them."""
    from headstart.text.network import build_word_body, word_vectors
    from headstart.text.words import Vocabulary
    from headstart.zoo import get_card

    card = get_card("glove_6b_50d")
    wv = word_vectors(card)
    made_up = ("zorblyish", "grimblyish", "by-the-numbers")
    assert all(wv.row(w) is None for w in made_up)
    data = tmp_path / "made-up.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(3):
            w.writerows([f"a zorblyish film, {p}", "fresh"] for p in POS)
            w.writerows([f"a grimblyish by-the-numbers film; {n}", "rotten"] for n in NEG)
    run = headstart.fit(data, model="glove_6b_50d", out=tmp_path / "run", epochs=3,
                        text=TextOptions(embeddings="frozen", encoder="cnn"))
    vocab = Vocabulary.from_dict(run.info["text"]["network"]["vocabulary"])
    start, stats = build_word_body(card, vocab, "cnn", 100, 0)
    assert stats["new_words"] == 1 + len(made_up) and stats["composed"] == 1  # UNK, the made-up words
    slot = int(start.new_slot[vocab.words.index("by-the-numbers")])
    parts = torch.from_numpy(wv.vectors[[wv.row(p) for p in ("by", "the", "numbers")]]).mean(0)
    assert torch.allclose(start.new_words.weight[slot], parts)
    body = run.model.body
    assert torch.equal(body.embedding.weight, start.embedding.weight)  # the pretrained rows: frozen
    assert not torch.equal(body.new_words.weight, start.new_words.weight)  # the new words' rows: trained
    assert run.info["text"]["network"]["project"] == 200  # the vectors' projection (twice hidden, >= 50-d): trained
    assert not torch.equal(body.project[0].weight, start.project[0].weight)
    texts = ["zorblyish", "a grimblyish by-the-numbers story"]
    again = headstart.load(tmp_path / "run")
    assert torch.equal(again.model.body.new_words.weight, body.new_words.weight)
    assert again.predict(texts, top_k=2) == run.predict(texts, top_k=2)


def test_glove_auto_encoder_is_mean_for_few_examples(tmp_path, reviews):
    run = headstart.fit(reviews, model="glove_6b_50d", out=tmp_path / "mean")
    assert run.metrics["strategy"] == "linear-probe" and run.metrics["text"]["encoder"] == "mean"
    assert run.metrics["val_accuracy"] >= 0.8


def test_word2vec_and_glove_files_as_models(tmp_path, reviews):
    from headstart.text.glove import builtin_glove_6b_50d
    from headstart.text.words import tokenize

    wv = builtin_glove_6b_50d()
    idx = wv.index()
    words = sorted({w for t in POS + NEG for w in tokenize(t)} & set(idx))
    glove = tmp_path / "mine.txt"
    glove.write_text("".join(f"{w} " + " ".join(f"{v:.5f}" for v in wv.vectors[idx[w]]) + "\n" for w in words))
    binary = tmp_path / "mine.bin"
    with open(binary, "wb") as f:
        f.write(f"{len(words)} 50\n".encode())
        for w in words:
            f.write(w.encode() + b" " + wv.vectors[idx[w]].astype("<f4").tobytes() + b"\n")
    for path in (glove, binary):
        run = headstart.fit(reviews, model=f"file:{path}", out=tmp_path / path.suffix[1:])
        assert run.card.architecture == "word-vectors" and run.metrics["text"]["token_coverage"] > 0.9


def test_hf_folder_is_a_text_card(tmp_path, reviews):
    import shutil

    from headstart.text.inputs import card_model_dir
    from headstart.zoo import get_card

    src = card_model_dir(get_card("minilm_l6"))
    local = tmp_path / "my-encoder"
    shutil.copytree(src, local)
    card = get_card(f"hf:{local}")
    assert card.modality == "text" and card.num_features == 384
    assert card.preprocessing.pooling == "mean" and card.preprocessing.normalize and card.preprocessing.max_length == 256
    run = headstart.fit(reviews, model=f"hf:{local}", out=tmp_path / "run", strategy="linear-probe")
    assert run.metrics["val_accuracy"] >= 0.9
    (local / "model.safetensors").rename(local / "pytorch_model.bin")
    with pytest.raises(headstart.HeadstartError, match="safetensors"):
        get_card(f"hf:{local}")


def test_rank_and_advise_on_text(tmp_path, reviews, capsys, monkeypatch):
    import headstart.text.network as network

    built = []  # advise's no-transfer network is fit's, for --embeddings random

    def spy(*args, **kwargs):
        body, stats = build(*args, **kwargs)
        built.append((kwargs.get("pretrained", True), body.kind, body.project is not None))
        return body, stats

    build = network.build_word_body
    monkeypatch.setattr(network, "build_word_body", spy)
    code, stdout, err = cli(capsys, "rank", reviews, "--json")
    assert code == 0, err
    rows = json.loads(stdout)
    assert {r["model"] for r in rows} == {"minilm_l6", "glove_6b_50d"}
    assert all(r["logme"] is not None and r["leep"] is None for r in rows)
    assert all("no source-task head" in r["note"] for r in rows)
    report = headstart.advise(reviews, seeds=1, curve=[1, 5, 1000], out=tmp_path / "advice.html")
    assert report["modality"] == "text" and set(report["curve_labels"]) == {"transfer", "scratch", "tfidf"}
    assert [r["per_class"] for r in report["learning_curve"]] == [1, 5]
    assert any("1000 per class need more texts than DATA holds" in n for n in report["notes"])
    assert report["learning_curve"][-1]["tfidf"]["mean"] is not None
    assert report["learning_curve"][-1]["scratch"]["mean"] is not None
    # 1 and 5 per class, and the 3 folds of the gain: fit's auto encoder, every row random
    assert built.count((False, "mean", False)) == 5
    cnn = headstart.advise(reviews, seeds=1, curve=[2], text=TextOptions(encoder="cnn"))
    assert built[-1] == (False, "cnn", True) and "the cnn encoder" in " ".join(cnn["notes"])
    html = (tmp_path / "advice.html").read_text()
    assert "TF-IDF" in html and "<svg" in html and report["recommended_command"] in html.replace("&#x27;", "'")


def test_long_texts_are_truncated_and_said_once(tmp_path, capsys):
    data = tmp_path / "long.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i in range(12):
            label = "a" if i % 2 else "b"
            f.write(json.dumps({"text": ("great " if label == "a" else "bad ") * (40 if i < 3 else 3),
                                "label": label}) + "\n")
    code, stdout, err = cli(capsys, "fit", data, "--out", tmp_path / "run", "--strategy", "linear-probe",
                            "--max-length", "16")
    assert code == 0, err
    assert err.count("truncated") == 1 and "3 of 12 texts" in err
    assert "3 truncated at 16 tokens" in stdout


@pytest.mark.parametrize("case", ["image-model", "columns", "one-label", "bad-utf8", "empty"])
def test_bad_text_input_gets_one_line(tmp_path, reviews, capsys, case):
    args = ["fit", reviews, "--out", tmp_path / "run"]
    expect = ""
    if case == "image-model":
        args += ["--model", "efficientnet_lite0"]
        expect = "image model"
    elif case == "columns":
        args = ["fit", write_reviews(tmp_path / "c.csv", columns=("review", "sentiment")), "--out", tmp_path / "run"]
        expect = "review"
    elif case == "one-label":
        p = tmp_path / "one.csv"
        p.write_text("text,label\nfine,a\ngood,a\n")
        args = ["fit", p, "--out", tmp_path / "run"]
        expect = "'a'"
    elif case == "bad-utf8":
        p = tmp_path / "bad.csv"
        p.write_bytes(b"text,label\nfine,a\nca\xffn't,b\n")
        args = ["fit", p, "--out", tmp_path / "run"]
        expect = "line 3"
    else:
        p = tmp_path / "empty.csv"
        p.write_text("text,label\nfine,a\n   ,b\ngood,b\n")
        args = ["fit", p, "--out", tmp_path / "run"]
        expect = "--skip-empty"
    code, _, err = cli(capsys, *args)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and expect in lines[0], err
    assert not (tmp_path / "run").exists()


def test_text_run_stopped_after_an_epoch_resumes_to_the_same_weights(tmp_path, reviews):
    """A word-vector run interrupted after its first epoch's checkpoint continues with --resume to
    exactly the weights of a run that was never stopped (the vocabulary is rebuilt identically)."""
    from safetensors.torch import load_file

    from conftest import stopped_after_checkpoint

    kw = dict(model="glove_6b_50d", epochs=3, batch_size=8, text=TextOptions(embeddings="finetune", encoder="cnn"))
    headstart.fit(reviews, out=tmp_path / "ref", **kw)
    with stopped_after_checkpoint(lambda state: state.global_epoch == 1):
        headstart.fit(reviews, out=tmp_path / "stopped", **kw)
    assert json.loads((tmp_path / "stopped" / "headstart.json").read_text())["status"] == "training"
    headstart.resume(tmp_path / "stopped")
    a = load_file(str(tmp_path / "ref" / "model.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
