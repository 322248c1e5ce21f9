"""Darknet networks (YOLOv3, YOLOv4 and their tiny versions): read a .cfg and its .weights into a PyTorch
module, and write one back in Darknet's format.

    model = load_darknet("yolov4-tiny.cfg", "yolov4-tiny.weights")   # eval mode
    maps = model(images)                  # the raw map at each yolo layer
    boxes = model.decode(maps)            # x, y, w, h, objectness, class scores per cell and anchor
    save_darknet(model, "out.cfg", "out.weights")
"""

from .cfg import format_cfg, parse_cfg, read_cfg, write_cfg
from .model import DarknetModel, WeightsHeader, decode_yolo
from .spec import Plan, Section, plan_layers
from .weights import load_darknet, load_weights, save_darknet, weights_bytes, write_weights

__all__ = ["DarknetModel", "Plan", "Section", "WeightsHeader", "decode_yolo", "format_cfg", "load_darknet",
           "load_weights", "parse_cfg", "plan_layers", "read_cfg", "save_darknet", "weights_bytes", "write_cfg",
           "write_weights"]
