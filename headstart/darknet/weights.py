"""Darknet's binary .weights: read into a DarknetModel, and write a model back as .cfg + .weights.

The format is a header, then the float32 (little-endian) parameters of each [convolutional] layer in .cfg
order, nothing else (no shapes, no names), so the .cfg is the only key to it:

    header       major, minor, revision (int32 each), then seen (images trained on): uint64 when
                 major * 10 + minor >= 2, else int32
    per layer    with batch_normalize=1: bias, scale, running mean, running variance (filters floats each)
                 without: bias (filters floats)
                 then the convolution weights (filters x in_channels/groups x size x size)

Because nothing in the file says where a layer ends, a file that ends early or has bytes left over
belongs to another .cfg (or is cut short); both are errors naming the byte and the layer. The file is
read with numpy from its bytes: never pickle.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import HeadstartError
from ..fileio import atomic_write_bytes
from .cfg import format_cfg, read_cfg
from .model import ConvBlock, DarknetModel, WeightsHeader

_FLOAT = np.dtype("<f4")
_SHORT_HEADER, _LONG_HEADER = struct.Struct("<iiii"), struct.Struct("<iiiQ")


def conv_parts(block: ConvBlock) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of one convolution's parameters in the order of a .weights file."""
    if block.bn is not None:
        bn = block.bn
        assert bn.running_mean is not None and bn.running_var is not None  # a Darknet norm tracks its statistics
        return [("biases", bn.bias), ("scales", bn.weight), ("running means", bn.running_mean),
                ("running variances", bn.running_var), ("weights", block.conv.weight)]
    assert block.conv.bias is not None  # a convolution without batch norm has its bias
    return [("biases", block.conv.bias), ("weights", block.conv.weight)]


def read_header(data: bytes, name: str) -> tuple[WeightsHeader, int]:
    """The header of a .weights file's bytes, and where the parameters start."""
    if len(data) >= 12:
        major, minor, _ = struct.unpack_from("<iii", data)
        layout = _LONG_HEADER if major * 10 + minor >= 2 else _SHORT_HEADER
    else:
        layout = _LONG_HEADER
    if len(data) < layout.size:
        raise HeadstartError(f"{name}: ends at byte {len(data):,} inside its header (expected {layout.size} bytes); "
                             "the file is truncated or is not a Darknet .weights file")
    return WeightsHeader(*layout.unpack_from(data)), layout.size


def header_bytes(header: WeightsHeader) -> bytes:
    return (_LONG_HEADER if header.wide_seen else _SHORT_HEADER).pack(*header)


def load_weights(model: DarknetModel, path: str | os.PathLike) -> None:
    """Fill `model`'s convolutions from a .weights file, checking first that its size is exactly what the
    model's .cfg needs (a truncated file, or one with bytes left over, is one line naming the byte and
    the layer), and keep its header on the model."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise HeadstartError(f"{name}: no such .weights file; check the path (or load the .cfg alone for a "
                             "randomly initialised network)") from None
    except IsADirectoryError:
        raise HeadstartError(f"{name} is a folder, not a .weights file; give the path of the .weights") from None
    except OSError as e:
        raise HeadstartError(f"{name} cannot be read ({e.strerror}); check its permissions") from None
    header, offset = read_header(data, name)
    # Walk the whole file before touching the model, so a mismatched file leaves the model as it was.
    arrays: list[tuple[torch.Tensor, np.ndarray]] = []
    last = None
    for index, block in model.conv_blocks():
        parts = conv_parts(block)
        layer_end = offset + sum(t.numel() for _, t in parts) * _FLOAT.itemsize
        for k, (_, tensor) in enumerate(parts):
            size = tensor.numel() * _FLOAT.itemsize
            if offset + size > len(data):
                rest = [what for what, _ in parts[k:]]
                rest_text = ", ".join(rest[:-1]) + " and " + rest[-1] if len(rest) > 1 else rest[0]
                raise HeadstartError(
                    f"{name}: ends at byte {len(data):,} inside layer {index} [convolutional] (expected "
                    f"{layer_end - len(data):,} more bytes for its {rest_text}); the file is truncated or belongs "
                    f"to another .cfg than {model.source}")
            values = np.frombuffer(data, _FLOAT, tensor.numel(), offset).reshape(tensor.shape)
            arrays.append((tensor, values))
            offset += size
        last = index
    if offset != len(data):
        after = f"the last convolution (layer {last})" if last is not None else "the header (the .cfg has no convolution)"
        raise HeadstartError(
            f"{name}: {len(data) - offset:,} bytes left over after {after}, which ends at byte {offset:,} of "
            f"{len(data):,}; the file belongs to another .cfg than {model.source}: give the .cfg it was trained with")
    with torch.no_grad():
        for tensor, values in arrays:
            tensor.copy_(torch.from_numpy(values.astype(np.float32)))
    model.header = header


def weights_bytes(model: DarknetModel) -> bytes:
    """The model's .weights file: its header, then each convolution's parameters as float32."""
    chunks = [header_bytes(model.header)]
    for _, block in model.conv_blocks():
        for _, tensor in conv_parts(block):
            chunks.append(tensor.detach().to("cpu", torch.float32).numpy().astype(_FLOAT).tobytes())
    return b"".join(chunks)


def write_weights(model: DarknetModel, path: str | os.PathLike) -> None:
    """Write the model's .weights file atomically (a reader sees the old file or the new one)."""
    atomic_write_bytes(path, weights_bytes(model))


def load_darknet(cfg_path: str | os.PathLike, weights_path: str | os.PathLike | None = None) -> DarknetModel:
    """A Darknet network from its .cfg and, when given, its .weights (else randomly initialised), in eval
    mode. Every problem with either file is one line naming the file and the place."""
    model = DarknetModel(read_cfg(cfg_path), str(cfg_path))
    if weights_path is not None:
        load_weights(model, weights_path)
    return model.eval()


def save_darknet(model: DarknetModel, cfg_path: str | os.PathLike, weights_path: str | os.PathLike) -> None:
    """Write `model` as a .cfg (its sections) and a .weights file (its header and parameters) that Darknet
    and OpenCV read; each file is written atomically. An unchanged model gives back the bytes it was
    loaded from (the .cfg loses only its comments and spacing)."""
    weights = weights_bytes(model)  # before any write, so a failure here leaves both files as they were
    atomic_write_bytes(cfg_path, format_cfg(model.sections).encode())
    atomic_write_bytes(weights_path, weights)
