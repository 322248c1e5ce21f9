"""Text DATA reading: CSV/TSV, JSON Lines and class folders; every mistake named on one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headstart.data.texts import TextSamples, read_predict_texts, read_text_data
from headstart.errors import HeadstartError


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def jsonl(path: Path, rows: list[object]) -> Path:
    return write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def error(fn, *args, **kwargs) -> str:
    with pytest.raises(HeadstartError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg, msg  # one line
    return msg


# ---------------------------------------------------------------- the three forms


def test_csv_reads_texts_labels_and_sorted_classes(tmp_path):
    f = write(tmp_path / "d.csv", 'text,label\n"good, really good",pos\nawful,neg\n"two\nlines",pos\nfine , pos \n')
    s = read_text_data(f)
    assert isinstance(s, TextSamples) and s.modality == "text" == TextSamples.modality
    assert s.texts == ("good, really good", "awful", "two\nlines", "fine ")
    assert s.classes == ("neg", "pos")
    assert s.labels.dtype == np.int64 and s.labels.tolist() == [1, 0, 1, 1]
    assert s.counts() == {"neg": 1, "pos": 3} and len(s) == 4
    assert s.groups is None
    assert s.source == str(f.resolve()) and Path(s.source).is_absolute()


def test_tsv_bom_and_crlf(tmp_path):
    f = write(tmp_path / "d.tsv", "\ufefftext\tlabel\r\nhello, world\ta\r\nbye\tb\r\n")
    s = read_text_data(f)
    assert s.texts == ("hello, world", "bye") and s.classes == ("a", "b")


def test_jsonl_numbers_become_string_labels(tmp_path):
    f = jsonl(tmp_path / "d.jsonl", [{"text": "x\u2028y", "label": 1}, {"text": "z", "label": 0}, {"text": "w", "label": 10}])
    f.write_text(f.read_text(encoding="utf-8") + "\n  \n", encoding="utf-8")  # blank lines are fine
    s = read_text_data(f)
    assert s.texts == ("x\u2028y", "z", "w")  # U+2028 inside a JSON string does not split the line
    assert s.classes == ("0", "1", "10") and s.labels.tolist() == [1, 0, 2]
    g = jsonl(tmp_path / "d.json-lines", [{"text": "a", "label": "p"}, {"text": "b", "label": "q"}])
    assert read_text_data(g).classes == ("p", "q")


def test_folder_of_class_subfolders(tmp_path):
    root = tmp_path / "data"
    write(root / "pos" / "1.txt", "great film\n")
    write(root / "pos" / "deep" / "2.txt", "loved it")
    write(root / "pos" / ".hidden.txt", "ignored")
    write(root / "pos" / "notes.md", "ignored")
    write(root / "neg" / "1.TXT", "\ufeffdull")
    write(root / ".git" / "x.txt", "ignored")
    s = read_text_data(root)
    assert s.classes == ("neg", "pos")
    assert sorted(s.texts) == ["dull", "great film\n", "loved it"]
    assert s.counts() == {"neg": 1, "pos": 2}


def test_column_names_and_groups_are_settable(tmp_path):
    f = write(tmp_path / "d.csv", "review,fresh,movie\na,yes,M1\nb,no,M2\nc,yes,M2\n")
    s = read_text_data(f, text_column="review", label_column="fresh", group_column="movie")
    assert s.texts == ("a", "b", "c") and s.classes == ("no", "yes") and s.groups == ("M1", "M2", "M2")
    sub = s.subset([2, 0])
    assert sub.texts == ("c", "a") and sub.groups == ("M2", "M1") and sub.labels.tolist() == [1, 1]
    assert sub.classes == s.classes


def test_fingerprint_follows_texts_and_label_names(tmp_path):
    a = read_text_data(write(tmp_path / "a.csv", "text,label\nx,p\ny,q\n"))
    b = read_text_data(jsonl(tmp_path / "b.jsonl", [{"text": "x", "label": "p"}, {"text": "y", "label": "q"}]))
    c = read_text_data(write(tmp_path / "c.csv", "text,label\nx,q\ny,p\n"))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.subset([1, 0]).fingerprint() != a.fingerprint()
    assert len(a.fingerprint()) == 64


def test_min_classes_one_allows_a_single_class(tmp_path):
    s = read_text_data(write(tmp_path / "d.csv", "text,label\nx,p\n"), min_classes=1)
    assert s.classes == ("p",)


# ---------------------------------------------------------------- mistakes, named


def test_missing_data_says_which_forms(tmp_path):
    msg = error(read_text_data, tmp_path / "nope.csv")
    assert "nope.csv" in msg and "does not exist" in msg and ".jsonl" in msg and "folder" in msg


def test_json_array_file_is_refused_with_a_hint(tmp_path):
    f = write(tmp_path / "d.json", '[{"text": "a", "label": "b"}]')
    assert "rename it to .jsonl" in error(read_text_data, f)
    g = write(tmp_path / "d.jsonl", '[{"text": "a", "label": "b"}]')
    assert "JSON array, not JSON Lines" in error(read_text_data, g)
    assert "d.txt" in error(read_text_data, write(tmp_path / "d.txt", "hi"))


@pytest.mark.parametrize("name, content", [
    ("d.csv", "review,sentiment\na,b\n"),
    ("d.jsonl", '{"review": "a", "sentiment": "b"}\n'),
])
def test_wrong_columns_list_those_found(tmp_path, name, content):
    msg = error(read_text_data, write(tmp_path / name, content))
    assert name in msg and "'review', 'sentiment'" in msg and "--text-column/--label-column" in msg
    msg = error(read_text_data, write(tmp_path / name, content), text_column="review")
    assert "label column 'label'" in msg and "--label-column" in msg and "--text-column" not in msg
    msg = error(read_text_data, write(tmp_path / name, content), text_column="review", label_column="sentiment",
                group_column="film")
    assert "group column 'film'" in msg and "--group-column" in msg


def test_empty_csv_and_header_only(tmp_path):
    assert "is empty" in error(read_text_data, write(tmp_path / "e.csv", ""))
    assert "no rows" in error(read_text_data, write(tmp_path / "h.csv", "text,label\n"))
    assert "is empty" in error(read_text_data, write(tmp_path / "e.jsonl", "\n\n"))


def test_non_utf8_csv_names_the_physical_line(tmp_path):
    f = write(tmp_path / "d.csv", b'text,label\n"multi\nline",a\nok,b\ncaf\xe9,a\n')
    msg = error(read_text_data, f)
    assert "d.csv" in msg and "line 5" in msg and "UTF-8" in msg


def test_non_utf8_jsonl_names_every_line(tmp_path):
    f = write(tmp_path / "d.jsonl", b'{"text": "a", "label": "x"}\n{"text": "\xff", "label": "y"}\n'
                                    b'{"text": "b\xfe", "label": "y"}\n')
    msg = error(read_text_data, f)
    assert "d.jsonl" in msg and "lines 2, 3" in msg


def test_non_utf8_files_in_a_folder_are_all_named(tmp_path):
    root = tmp_path / "data"
    write(root / "a" / "good.txt", "fine")
    write(root / "a" / "bad1.txt", b"first\nsecond \xe9\n")
    write(root / "b" / "bad2.txt", b"\xff")
    msg = error(read_text_data, root)
    assert "2 files are not UTF-8" in msg
    assert "bad1.txt (line 2)" in msg and "bad2.txt (line 1)" in msg


def test_invalid_json_lines_are_all_named(tmp_path):
    f = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label: "y"}\n[1, 2]\n'
                                    '{"text": "c", "label": "y"}\n{oops\n')
    msg = error(read_text_data, f)
    assert "3 lines are not JSON objects" in msg
    assert f"{f}:2" in msg and f"{f}:3 (a list" in msg and f"{f}:5" in msg


def test_empty_texts_listed_up_to_five_with_total(tmp_path):
    rows = ["text,label", "a,p", "b,q"] + [" ,p", ",q"] * 4  # 8 empty, on lines 4..11
    f = write(tmp_path / "d.csv", "\n".join(rows) + "\n")
    msg = error(read_text_data, f)
    assert "8 texts are empty" in msg and f"{f}:4" in msg and f"{f}:8" in msg and f"{f}:9" not in msg
    assert "and 3 more" in msg and "--skip-empty" in msg
    said = []
    s = read_text_data(f, skip_empty=True, log=said.append)
    assert s.texts == ("a", "b") and len(said) == 1 and "8 empty texts" in said[0]


def test_empty_texts_in_folders_and_jsonl_are_named(tmp_path):
    root = tmp_path / "data"
    write(root / "a" / "1.txt", "x")
    write(root / "b" / "1.txt", "y")
    write(root / "b" / "blank.txt", "  \n\t")
    msg = error(read_text_data, root)
    assert "1 text is empty" in msg and "blank.txt" in msg
    assert read_text_data(root, skip_empty=True).texts == ("x", "y")
    f = jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "p"}, {"label": "q"}, {"text": None, "label": "q"}])
    msg = error(read_text_data, f)
    assert f"{f}:2" in msg and f"{f}:3" in msg and "2 texts are empty" in msg


def test_class_folder_with_only_empty_texts_is_named_when_skipping(tmp_path):
    root = tmp_path / "data"
    write(root / "a" / "1.txt", "x")
    write(root / "a" / "2.txt", "y")
    write(root / "b" / "1.txt", "")
    assert "'b' has only empty texts" in error(read_text_data, root, skip_empty=True)


def test_missing_labels_are_listed(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,p\nb,\nc, \nd,q\ne\n")
    msg = error(read_text_data, f)
    assert "3 rows have no label" in msg and f"{f}:3" in msg and f"{f}:4" in msg and f"{f}:6" in msg
    assert "column 'label'" in msg


def test_missing_labels_and_empty_texts_reported_together(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,p\nb,\n,q\n")
    msg = error(read_text_data, f, skip_empty=False)
    assert f"1 row has no label ({f}:3)" in msg and f"1 text is empty or only whitespace ({f}:4)" in msg


def test_rows_with_extra_cells_are_named(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\ngreat, fun,pos\nok,neg\n")
    msg = error(read_text_data, f)
    assert f"{f}:2" in msg and "more cells than the header's 2" in msg and "double quotes" in msg


def test_single_label_value_is_named(tmp_path):
    msg = error(read_text_data, write(tmp_path / "d.csv", "text,label\na,pos\nb,pos\n"))
    assert "1 class ('pos')" in msg and "column 'label'" in msg and "at least 2" in msg
    msg = error(read_text_data, write(tmp_path / "e.csv", "text,label\na,x\nb,y\n"), min_classes=3)
    assert "2 classes" in msg and "at least 3" in msg
    root = tmp_path / "data"
    write(root / "only" / "1.txt", "x")
    assert "1 class ('only')" in error(read_text_data, root)


def test_empty_class_folder_is_named(tmp_path):
    root = tmp_path / "data"
    write(root / "a" / "1.txt", "x")
    write(root / "b" / "1.txt", "y")
    (root / "c").mkdir()
    write(root / "d" / "readme.md", "no texts")
    msg = error(read_text_data, root)
    assert "'c', 'd' have no .txt files" in msg


def test_folder_without_subfolders(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    assert "is empty" in error(read_text_data, root)
    write(root / "1.txt", "x")
    assert "1 .txt file but no class subfolders" in error(read_text_data, root)


def test_group_column_problems(tmp_path):
    root = tmp_path / "data"
    write(root / "a" / "1.txt", "x")
    assert "is a folder" in error(read_text_data, root, group_column="movie")
    f = write(tmp_path / "d.csv", "text,label,movie\na,p,M\nb,q,\n")
    msg = error(read_text_data, f, group_column="movie")
    assert f"1 row has no value in group column 'movie' ({f}:3)" in msg


def test_nested_json_values_are_refused(tmp_path):
    f = jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "p"}, {"text": ["b"], "label": "q"}])
    assert f"{f}:2" in error(read_text_data, f)


# ---------------------------------------------------------------- predict inputs


def test_predict_literals_and_files(tmp_path):
    t = write(tmp_path / "one.txt", "whole\nfile\n")
    c = write(tmp_path / "many.csv", "id,text\n1,first\n2,\"sec, ond\"\n")
    j = jsonl(tmp_path / "many.jsonl", [{"text": "j1"}, {"text": "j2", "label": "ignored"}])
    got = read_predict_texts(["a literal text", str(t), str(c), str(j), "notes.md are great"])
    assert got == ["a literal text", "whole\nfile\n", "first", "sec, ond", "j1", "j2", "notes.md are great"]
    assert read_predict_texts([str(c)], text_column="id") == ["1", "2"]
    # a review longer than a file name may be (255 bytes) is a text, not an OSError; so is one that ends in ".txt"
    review = "Sitting in the third row of the cinema, " * 12
    assert read_predict_texts([review, review + "see notes.txt"]) == [review, review + "see notes.txt"]


def test_predict_images_names_a_long_missing_name(tmp_path):
    from headstart.data.images import expand_files

    msg = error(expand_files, ["x" * 300 + ".png"])
    assert "not found" in msg


def test_predict_mistakes(tmp_path):
    assert "nothing to predict" in error(read_predict_texts, [])
    assert "empty text" in error(read_predict_texts, ["  "])
    assert "does not exist" in error(read_predict_texts, [str(tmp_path / "missing.txt")])
    assert "is a folder" in error(read_predict_texts, [str(tmp_path)])
    assert ".md file" in error(read_predict_texts, [str(write(tmp_path / "n.md", "x"))])
    bad = write(tmp_path / "bad.txt", b"ok\nok\n\xe9\n")
    msg = error(read_predict_texts, [str(bad)])
    assert "bad.txt" in msg and "line 3" in msg
    c = write(tmp_path / "c.csv", "review\nx\n")
    msg = error(read_predict_texts, [str(c)])
    assert "'review'" in msg and "column 'text'" in msg and "--text-column" not in msg  # predict has no such option
    assert read_predict_texts([str(c)], text_column="review") == ["x"]  # a run fitted on column 'review'
    assert "is empty" in error(read_predict_texts, [str(write(tmp_path / "e.txt", "\n\n"))])
    msg = error(read_predict_texts, [str(write(tmp_path / "e.csv", "text,id\na,1\n ,2\nb,3\n"))])
    assert "e.csv:3" in msg and "empty" in msg  # never labelled as if it were a text
    assert "no rows" in error(read_predict_texts, [str(write(tmp_path / "h.csv", "text\n"))])
    j = write(tmp_path / "j.jsonl", '{"text": "a"}\nnot json\n')
    assert f"{j}:2" in error(read_predict_texts, [str(j)])


def test_collate_pads_to_the_longest_or_a_multiple():
    from headstart.text.inputs import collate

    batch = [([5, 6, 7], 0), ([5, 6, 7, 8, 9], 1)]
    x, y = collate(0)(batch)
    assert x.shape == (2, 5) and x[0].tolist() == [5, 6, 7, 0, 0] and y.tolist() == [0, 1]
    assert collate(0, 8)(batch)[0].shape == (2, 8)  # a GPU's batches: a multiple of 8 tokens
    long = [(list(range(1, 19)), 0)]
    assert collate(0, 8, cap=20)(long)[0].shape == (1, 20)  # not past the cap (the tokens' max length)


def test_a_column_named_twice_or_a_repeated_header_is_refused(tmp_path):
    rows = "".join(f"good {i},pos,junk {i}\nbad {i},neg,junk {i}\n" for i in range(3))
    msg = error(read_text_data, write(tmp_path / "d.csv", "text,label,text\n" + rows))
    assert "'text' (columns 1, 3)" in msg and "rename" in msg  # a row would keep the last 'text' only
    joined = "text,label\ngood,pos\nbad,neg\ntext,label\nfine,pos\n"
    msg = error(read_text_data, write(tmp_path / "j.csv", joined))
    assert "j.csv:4" in msg and "repeats the header" in msg
    msg = error(read_text_data, write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n'
                                      '{"text": "b", "label": "y", "text": "c"}\n'))
    assert "d.jsonl:2" in msg and "'text' more than once" in msg
