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
"""

__version__ = "0.1.0"

from .api import evaluate, fit, predict, resume  # noqa: E402
from .advise import advise  # noqa: E402
from .lr_find import lr_find  # noqa: E402
from .pretrain import pretrain  # noqa: E402
from .rank import rank_models  # noqa: E402
from .errors import HeadstartError  # noqa: E402
from .export import OnnxRun, export  # noqa: E402
from .run import Run, load  # noqa: E402
from .zoo import ModelCard, get_card, list_cards, load_network  # noqa: E402

list_models = list_cards

__all__ = [
    "HeadstartError",
    "advise",
    "ModelCard",
    "OnnxRun",
    "Run",
    "evaluate",
    "export",
    "fit",
    "get_card",
    "list_cards",
    "list_models",
    "load",
    "load_network",
    "lr_find",
    "predict",
    "pretrain",
    "rank_models",
    "resume",
]
