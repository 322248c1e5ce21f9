"""What a Darknet .cfg means: its sections, read into typed layers and checked, with each layer's output shape.

Every check on a .cfg runs here, before any tensor is made: option values (whole numbers, numbers, lists
such as `layers=-1,61`, `mask=` and `anchors=`), references of route and shortcut layers to earlier layers,
and the shapes that meet at a route, a shortcut or a yolo layer. Each failure is one line naming the file,
the line, Darknet's layer number and the fix. Where Darknet and OpenCV disagree on a default, Darknet
(whose format this is) wins, and the comment says so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import HeadstartError, plural

NET_TYPES = ("net", "network")  # Darknet takes either name for the first section
# Darknet's own short names for two layer types; a section keeps the name it was written with.
ALIASES = {"conv": "convolutional", "max": "maxpool"}
LAYER_TYPES = ("convolutional", "maxpool", "route", "shortcut", "upsample", "yolo")
ACTIVATIONS = ("linear", "leaky", "relu", "mish", "swish", "logistic", "tanh")

# Options that change what a layer computes and that headstart does not build (yet), with the value
# that means "off". Refusing them beats computing something else in silence; the many training-only
# options (jitter, ignore_thresh, random, ...) change nothing at inference and are kept as they are.
UNSUPPORTED: dict[str, dict[str, float | str]] = {
    "convolutional": {"dilation": 1, "xnor": 0, "binary": 0, "antialiasing": 0, "flipped": 0, "deform": 0,
                      "sway": 0, "rotate": 0, "stretch": 0, "stretch_sway": 0, "share_index": "", "coordconv": 0},
    "maxpool": {"maxpool_depth": 0, "antialiasing": 0, "out_channels": ""},
    "shortcut": {"alpha": 1, "beta": 1, "weights_type": "none", "weights_normalization": "none"},
    "upsample": {"reverse": 0},
    "route": {},
    "yolo": {"new_coords": 0},
}

_INT = re.compile(r"[+-]?\d+")

Shape = tuple[int, int, int]  # channels, height, width of one image's output


@dataclass
class Section:
    """One `[type]` block of a .cfg: its type as written and its options as strings, in file order.

    `line` is where the block starts in the file it came from (0 for a section made in code); it
    names the place in error messages and takes no part in comparing two sections."""

    type: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = field(default=0, compare=False)

    @property
    def kind(self) -> str:
        """The layer type with Darknet's aliases resolved ('conv' -> 'convolutional')."""
        return ALIASES.get(self.type, self.type)


def where(source: str, section: Section, index: int) -> str:
    """The start of an error message about section `index` of a .cfg: file, line and, for a layer,
    Darknet's layer number (counted from 0 after [net], as Darknet prints it)."""
    line = f" line {section.line}" if section.line else ""
    what = f"[{section.type}]" if index == 0 else f"layer {index - 1} [{section.type}]"
    return f"{source}{line}: {what}"


@dataclass(frozen=True)
class Net:
    """The network's input: Darknet's [net] width, height and channels."""

    width: int
    height: int
    channels: int


@dataclass(frozen=True)
class Conv:
    """A convolution (its padding already resolved from pad=/padding=), then batch norm, then activation."""

    in_channels: int
    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: str

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.filters, self.in_channels // self.groups, self.size, self.size)


@dataclass(frozen=True)
class MaxPool:
    """Darknet's max pool: `padding` extra cells in all, padding // 2 before and the rest after."""

    size: int
    stride: int
    padding: int


@dataclass(frozen=True)
class Route:
    """The outputs of earlier layers (absolute indices), each cut into `groups` parts along the channels
    and part `group_id` kept (YOLOv4-tiny), then concatenated along the channels."""

    layers: tuple[int, ...]
    groups: int
    group_id: int


@dataclass(frozen=True)
class Shortcut:
    """The previous output plus an earlier layer's output (absolute index), then an activation."""

    source: int
    activation: str


@dataclass(frozen=True)
class Upsample:
    """Nearest-neighbour upsampling by `stride`, times `scale` (Darknet's option, 1 nearly always)."""

    stride: int
    scale: float


@dataclass(frozen=True)
class Yolo:
    """A detection head: the previous layer's map holds, per anchor in `mask`, x, y, w, h, objectness and
    `classes` scores. `anchors` are all `num` (width, height) pairs in network pixels."""

    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]
    classes: int
    num: int
    scale_x_y: float

    @property
    def masked_anchors(self) -> tuple[tuple[float, float], ...]:
        """The anchors this head predicts with, in the order of its map's channel blocks."""
        return tuple(self.anchors[m] for m in self.mask)


Layer = Conv | MaxPool | Route | Shortcut | Upsample | Yolo


@dataclass(frozen=True)
class Plan:
    """A checked .cfg: the input, the typed layers, and each layer's output shape at the [net] size."""

    net: Net
    layers: tuple[Layer, ...]
    shapes: tuple[Shape, ...]


class Options:
    """One section's options read as Darknet reads them, each mistake one line naming its place."""

    def __init__(self, source: str, section: Section, index: int) -> None:
        self.source, self.section, self.index = source, section, index

    def fail(self, problem: str) -> HeadstartError:
        return HeadstartError(f"{where(self.source, self.section, self.index)}: {problem}")

    def integer(self, key: str, default: int | None = None, minimum: int | None = None) -> int:
        text = self.section.options.get(key)
        if text is None:
            if default is None:
                raise self.fail(f"gives no {key}=; add it (e.g. {key}=1)")
            return default
        if not _INT.fullmatch(text):
            raise self.fail(f"{key}={text} is not a whole number; write e.g. {key}=1")
        value = int(text)
        if minimum is not None and value < minimum:
            raise self.fail(f"{key}={text} is below {minimum}; give {key}={minimum} or more")
        return value

    def number(self, key: str, default: float) -> float:
        text = self.section.options.get(key)
        return default if text is None else self._number(key, text, text)

    def _number(self, key: str, item: str, text: str) -> float:
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not item.strip():
            raise self.fail(f"{key}={text}: '{item}' is not a number; write e.g. {key}=1.0")
        return value

    def integers(self, key: str) -> list[int]:
        text = self.section.options[key]
        items = text.split(",")
        bad = [item for item in items if not _INT.fullmatch(item)]
        if bad:
            raise self.fail(f"{key}={text}: '{bad[0]}' is not a whole number; write a comma-separated list "
                            f"such as {key}=-1,61")
        return [int(item) for item in items]

    def numbers(self, key: str) -> list[float]:
        text = self.section.options[key]
        return [self._number(key, item, text) for item in text.split(",")]

    def word(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.section.options.get(key, default)
        if value not in choices:
            raise self.fail(f"{key}={value} is not one headstart builds; use one of {', '.join(choices)}")
        return value

    def reference(self, key: str, value: int) -> int:
        """An earlier layer named by `value` (negative: counted back from this layer), as an absolute index."""
        layer = self.index - 1
        target = layer + value if value < 0 else value
        if not 0 <= target < layer:
            earlier = f"one of layers 0..{layer - 1}" if layer > 0 else "nothing (it is the first layer)"
            raise self.fail(f"{key}={self.section.options[key]}: {value} points at layer {target}, which does not "
                            f"come before this one; it can point at {earlier}")
        return target

    def refuse_unsupported(self) -> None:
        for key, off in UNSUPPORTED.get(self.section.kind, {}).items():
            text = self.section.options.get(key)
            if text is None:
                continue
            same = text == off if isinstance(off, str) else self._number(key, text, text) == off
            if not same:
                raise self.fail(f"{key}={text} is not supported by headstart yet; remove it (or run this network "
                                "with Darknet itself)")


def check_outline(sections: list[Section], source: str) -> None:
    """The file's outline: one [net] and it comes first, at least one layer, every layer of a type
    headstart builds."""
    if not sections:
        raise HeadstartError(f"{source}: no section at all, so this is not a Darknet .cfg; give the .cfg of the "
                             "network ([net], then its layers)")
    if sections[0].type not in NET_TYPES:
        line = f" line {sections[0].line}" if sections[0].line else ""
        raise HeadstartError(f"{source}{line}: no [net] section before the first layer [{sections[0].type}]; start "
                             "the file with [net] giving width=, height= and channels=")
    if len(sections) == 1:
        raise HeadstartError(f"{source}: [net] is followed by no layer; add the network's layers after it")
    for index, section in enumerate(sections[1:], start=1):
        if section.type in NET_TYPES:
            raise HeadstartError(f"{where(source, section, index)} is a second [{section.type}] section; "
                                 "a .cfg has one, at the top: remove this one")
        if section.kind not in LAYER_TYPES:
            line = f" line {section.line}" if section.line else ""
            raise HeadstartError(f"{source}{line}: unknown layer type [{section.type}] (layer {index - 1}); "
                                 f"headstart reads {', '.join(LAYER_TYPES)} (YOLOv3, YOLOv4 and their tiny versions)")


def plan_layers(sections: list[Section], source: str = "<cfg>") -> Plan:
    """Check parsed sections (from headstart.darknet.cfg.parse_cfg) and read them into typed layers,
    each with the shape it outputs at the [net] size; a problem is a HeadstartError naming its line."""
    check_outline(sections, source)
    net = _net(Options(source, sections[0], 0))
    layers: list[Layer] = []
    shapes: list[Shape] = []
    for index, section in enumerate(sections[1:], start=1):
        opts = Options(source, section, index)
        opts.refuse_unsupported()
        before = shapes[-1] if shapes else (net.channels, net.height, net.width)
        layer, shape = BUILDERS[section.kind](opts, before, shapes)
        if min(shape) < 1:
            raise opts.fail(f"its output would be {shape[2]}x{shape[1]}x{shape[0]} (width x height x channels) "
                            f"for a {net.width}x{net.height} input; make the input larger or the layer smaller")
        layers.append(layer)
        shapes.append(shape)
    return Plan(net, tuple(layers), tuple(shapes))


def _net(opts: Options) -> Net:
    # Darknet has no usable default for the input size (0), so width= and height= are required;
    # channels= defaults to 3 (OpenCV's default; every published .cfg gives it).
    return Net(width=opts.integer("width", minimum=1), height=opts.integer("height", minimum=1),
               channels=opts.integer("channels", 3, minimum=1))


def _conv(opts: Options, before: Shape, shapes: list[Shape]) -> tuple[Layer, Shape]:
    channels, height, width = before
    size = opts.integer("size", 1, minimum=1)
    stride = opts.integer("stride", 1, minimum=1)
    for key in ("stride_x", "stride_y"):  # AlexeyAB's Darknet: only the same stride both ways is built here
        if opts.integer(key, stride) != stride:
            raise opts.fail(f"{key}={opts.section.options[key]} differs from stride={stride}; headstart builds "
                            "square strides only: remove it")
    filters = opts.integer("filters", 1, minimum=1)
    groups = opts.integer("groups", 1, minimum=1)
    if channels % groups or filters % groups:
        raise opts.fail(f"groups={groups} does not divide its {channels} input channels and filters={filters}; "
                        "give a groups= that divides both")
    # As Darknet: pad=1 means 'same' padding (size // 2) and overrides padding=.
    padding = size // 2 if opts.integer("pad", 0) else opts.integer("padding", 0, minimum=0)
    bn = opts.integer("batch_normalize", 0)
    if bn not in (0, 1):
        raise opts.fail(f"batch_normalize={bn}; write batch_normalize=1 or 0")
    # Darknet's default activation for a convolution is logistic (OpenCV's is linear); Darknet wins here.
    activation = opts.word("activation", "logistic", ACTIVATIONS)
    out = (filters, (height + 2 * padding - size) // stride + 1, (width + 2 * padding - size) // stride + 1)
    return Conv(channels, filters, size, stride, padding, groups, bool(bn), activation), out


def _maxpool(opts: Options, before: Shape, shapes: list[Shape]) -> tuple[Layer, Shape]:
    channels, height, width = before
    # Darknet's defaults (OpenCV's differ: size=2, stride=2); padding defaults to size - 1, which keeps the
    # size at stride 1 (yolov3-tiny's size=2 stride=1 pool pads one cell on the right and bottom).
    stride = opts.integer("stride", 1, minimum=1)
    size = opts.integer("size", stride, minimum=1)
    for key in ("stride_x", "stride_y"):
        if opts.integer(key, stride) != stride:
            raise opts.fail(f"{key}={opts.section.options[key]} differs from stride={stride}; headstart builds "
                            "square strides only: remove it")
    padding = opts.integer("padding", size - 1, minimum=0)
    out = (channels, (height + padding - size) // stride + 1, (width + padding - size) // stride + 1)
    return MaxPool(size, stride, padding), out


def _route(opts: Options, before: Shape, shapes: list[Shape]) -> tuple[Layer, Shape]:
    if "layers" not in opts.section.options:
        raise opts.fail("gives no layers=; name the layers it joins, e.g. layers=-1,61")
    layers = tuple(opts.reference("layers", v) for v in opts.integers("layers"))
    groups = opts.integer("groups", 1, minimum=1)
    group_id = opts.integer("group_id", 0, minimum=0)
    if group_id >= groups:
        raise opts.fail(f"group_id={group_id} with groups={groups}; group_id counts from 0 to {groups - 1}")
    sizes = {shapes[i][1:] for i in layers}
    if len(sizes) > 1:
        found = ", ".join(f"layer {i}: {shapes[i][2]}x{shapes[i][1]}" for i in layers)
        raise opts.fail(f"joins maps of different sizes ({found}); route layers whose outputs have the same "
                        "width and height")
    for i in layers:
        if shapes[i][0] % groups:
            raise opts.fail(f"groups={groups} does not divide the {shapes[i][0]} channels of layer {i}; "
                            "give a groups= that divides them")
    height, width = sizes.pop()
    return Route(layers, groups, group_id), (sum(shapes[i][0] // groups for i in layers), height, width)


def _shortcut(opts: Options, before: Shape, shapes: list[Shape]) -> tuple[Layer, Shape]:
    if "from" not in opts.section.options:
        raise opts.fail("gives no from=; name the layer it adds, e.g. from=-3")
    sources = opts.integers("from")
    if len(sources) != 1:
        raise opts.fail(f"from={opts.section.options['from']} adds several layers; headstart adds one: "
                        "give a single from=")
    source = opts.reference("from", sources[0])
    if shapes[source] != before:
        c, h, w = shapes[source]
        raise opts.fail(f"adds layer {source} ({w}x{h}x{c}) to a {before[2]}x{before[1]}x{before[0]} map; "
                        "headstart adds maps of the same shape only: point from= at a layer of that shape")
    return Shortcut(source, opts.word("activation", "linear", ACTIVATIONS)), before


def _upsample(opts: Options, before: Shape, shapes: list[Shape]) -> tuple[Layer, Shape]:
    channels, height, width = before
    # A negative stride is Darknet's downsampling, which headstart does not build.
    stride = opts.integer("stride", 2, minimum=1)
    return Upsample(stride, opts.number("scale", 1.0)), (channels, height * stride, width * stride)


def _yolo(opts: Options, before: Shape, shapes: list[Shape]) -> tuple[Layer, Shape]:
    if opts.index == 1:
        raise opts.fail("is the first layer; a yolo layer reads the map of the convolution before it")
    classes = opts.integer("classes", 20, minimum=1)  # Darknet's default
    num = opts.integer("num", 1, minimum=1)
    if "anchors" not in opts.section.options:
        raise opts.fail(f"gives no anchors=; list {num} width,height pairs in network pixels, e.g. "
                        "anchors=10,14, 23,27, 37,58")
    values = opts.numbers("anchors")
    if len(values) != 2 * num:
        raise opts.fail(f"anchors= lists {len(values)} numbers but num={num} needs {2 * num} (a width and a "
                        "height per anchor); make them agree")
    if min(values) <= 0:
        raise opts.fail(f"anchors= holds {min(values):g}; anchors are widths and heights in network pixels, "
                        "all above 0")
    mask = tuple(opts.integers("mask")) if "mask" in opts.section.options else tuple(range(num))
    wrong = [m for m in mask if not 0 <= m < num]
    if wrong:
        raise opts.fail(f"mask={opts.section.options['mask']}: anchor {wrong[0]} does not exist; with num={num} "
                        f"mask= picks from 0..{num - 1}")
    need = len(mask) * (classes + 5)
    if before[0] != need:
        raise opts.fail(f"reads a map of {before[0]} channels, but {plural(len(mask), 'anchor')} x "
                        f"({plural(classes, 'class', 'classes')} + 5) "
                        f"needs {need}; set filters={need} in the convolution before it")
    anchors = tuple((values[2 * k], values[2 * k + 1]) for k in range(num))
    return Yolo(mask, anchors, classes, num, opts.number("scale_x_y", 1.0)), before


BUILDERS = {"convolutional": _conv, "maxpool": _maxpool, "route": _route, "shortcut": _shortcut,
            "upsample": _upsample, "yolo": _yolo}
