"""headstart: transfer learning in one command.

    import headstart
    run = headstart.fit("data/", model="efficientnet_lite0", out="runs/first")
    headstart.evaluate(run, "test/")
    headstart.load("runs/first").predict(["photo.jpg"])
    headstart.fit("reviews.csv", out="runs/reviews")   # text: minilm_l6 by default
    headstart.load("runs/reviews").predict(["a tender, funny film"])
    headstart.resume("runs/killed")      # a stopped run goes on where it stopped
    src = headstart.pretrain("big/", out="runs/src")            # your own source model
    headstart.fit("small/", model=f"file:{src.dir}", out="runs/small")
    headstart.export("runs/first", format="onnx", out="first.onnx")   # one file for serving
    headstart.predict("first.onnx", ["photo.jpg"])                     # with onnxruntime
    headstart.fit_module(net, train_set, val_set, body="backbone", strategy="lp-ft")   # your own nn.Module
"""

import sys
import types

__version__ = "0.1.0"

# Public names, imported on first use (PEP 562): `import headstart` stays light (no torch) until
# a function that needs it is called, so `headstart --help` answers at once.
_PUBLIC = {
    "fit": "api", "evaluate": "api", "predict": "api", "resume": "api",
    "advise": "advise",
    "lr_find": "lr_find",
    "fit_module": "engine",
    "pretrain": "pretrain",
    "rank_models": "rank",
    "HeadstartError": "errors",
    "OnnxRun": "export", "export": "export",
    "Run": "run", "load": "api",
    "ModelCard": "zoo", "get_card": "zoo", "list_cards": "zoo", "load_network": "zoo",
    "list_models": "zoo",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'headstart' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), "list_cards" if name == "list_models" else name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


class _Package(types.ModuleType):
    """Importing a submodule sets it as an attribute of its package: `import headstart.advise` would
    put the module where the function `headstart.advise` belongs (as `from .advise import advise` in
    this file once made sure). The function wins, as before; the module is in sys.modules."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
