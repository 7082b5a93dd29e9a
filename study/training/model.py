"""The networks of the study, chosen by `model.arch` (the config group `model`):

- `cnn` (the baseline): stage s (0-based) has `channels * 2**s` kernels in each of its
  `convs_per_stage` convolutions (`kernel_size` square, same padding, each followed by the
  `normalization` and the activation) and ends by halving the spatial size with max pooling,
  average pooling, or (pooling=stride) a stride-2 convolution in place of the pooling layer; then
  `fc_layers` hidden fully connected layers of `fc_width`, dropout, and the 10 logits.
- `lenet5` and `alexnet`: the textbook's classics, adapted to 3x32x32 input (see their builders).
Every level of a `model.*` factor is realised here, and the factor records (study.design.factors)
take their allowed values from these tables: ACTIVATION_LAYERS, POOLINGS, NORMALIZATIONS, and each
network's `keys` in ARCHITECTURES (the model keys it has; any other must be null in its config).
`macs_per_image` counts a network's multiply-accumulates, the unit of a trial's cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from study.training.data import CLASSES, SIDE

# In place where PyTorch can: every activation follows a convolution, a normalization or a linear
# layer, none of whose backward passes reads its output, and writing over it saves a tensor per
# layer (measured: 5-7% faster trials on the 2-core CPU, the same numbers)
ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(inplace=True),  # negative slope 0.01
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
POOLINGS = ("max", "avg", "stride")  # stride: a strided convolution instead of a pooling layer
GROUPS = 8  # group normalization: channels per layer are split into (at most) this many groups
NORMALIZATIONS: dict[str, Callable[[int], list[nn.Module]]] = {
    "batch": lambda c: [nn.BatchNorm2d(c)],
    "none": lambda c: [],
    "group": lambda c: [nn.GroupNorm(math.gcd(GROUPS, c), c)],
    "layer": lambda c: [nn.GroupNorm(1, c)],  # over channels and pixels of each image
}


def conv_block(c_in: int, c_out: int, kernel_size: int, stride: int, normalization: str,
               activation: str, padding: int | None = None) -> list[nn.Module]:
    """Convolution (same padding unless given), normalization, activation."""
    padding = kernel_size // 2 if padding is None else padding
    conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding,
                     bias=normalization == "none")  # a normalization's shift replaces the bias
    return [conv, *NORMALIZATIONS[normalization](c_out), ACTIVATION_LAYERS[activation]()]


def downsample(pooling: str, width: int, size: int, stride: int, normalization: str,
               activation: str) -> list[nn.Module]:
    """Pooling over size x size windows, or (pooling=stride) a convolution with that stride."""
    if pooling == "max":
        return [nn.MaxPool2d(size, stride)]
    if pooling == "avg":
        return [nn.AvgPool2d(size, stride)]
    if pooling == "stride":
        return conv_block(width, width, size, stride, normalization, activation, padding=0)
    raise ValueError(f"unknown pooling {pooling!r}")


def build_cnn(cfg: DictConfig) -> nn.Sequential:
    """The study's baseline family: `stages` stages of `convs_per_stage` same-size convolutions,
    each stage ending in a 2x downsampling."""
    layers: list[nn.Module] = []
    c_in = 3
    for stage in range(cfg.stages):
        width = cfg.channels * 2**stage
        for _ in range(cfg.convs_per_stage):
            layers += conv_block(c_in, width, cfg.kernel_size, 1, cfg.normalization,
                                 cfg.activation)
            c_in = width
        if cfg.pooling == "stride":  # a same-padded strided conv, as in all-convolutional nets
            layers += conv_block(width, width, cfg.kernel_size, 2, cfg.normalization,
                                 cfg.activation)
        else:
            layers += downsample(cfg.pooling, width, 2, 2, cfg.normalization, cfg.activation)
    side = SIDE // 2**cfg.stages
    features = c_in * side * side
    hidden: list[nn.Module] = []
    for _ in range(cfg.fc_layers):
        hidden += [nn.Linear(features, cfg.fc_width), ACTIVATION_LAYERS[cfg.activation]()]
        features = cfg.fc_width
    return nn.Sequential(*layers, nn.Flatten(), *hidden, nn.Dropout(cfg.dropout),
                         nn.Linear(features, CLASSES))


def build_lenet5(cfg: DictConfig) -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998) on 3x32x32: C1 5x5 conv (6 maps) -> S2 2x2 subsampling ->
    C3 5x5 conv (16) -> S4 -> C5 5x5 conv (120) -> F6 (84) -> 10. `channels` sets C1's maps;
    C3 and C5 keep the paper's ratios to it (16/6, 120/6). No dropout, no batch norm."""
    c1, c3, c5 = cfg.channels, round(cfg.channels * 16 / 6), cfg.channels * 20
    layers = [
        *conv_block(3, c1, 5, 1, "none", cfg.activation, padding=0),  # 32 -> 28
        *downsample(cfg.pooling, c1, 2, 2, "none", cfg.activation),  # -> 14
        *conv_block(c1, c3, 5, 1, "none", cfg.activation, padding=0),  # -> 10
        *downsample(cfg.pooling, c3, 2, 2, "none", cfg.activation),  # -> 5
        *conv_block(c3, c5, 5, 1, "none", cfg.activation, padding=0),  # -> 1
    ]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c5, 84),
                         ACTIVATION_LAYERS[cfg.activation](), nn.Linear(84, CLASSES))


def build_alexnet(cfg: DictConfig) -> nn.Sequential:
    """AlexNet's shape (Krizhevsky et al. 2012) sized for 32x32: five convolutions (5x5, 5x5,
    3x3, 3x3, 3x3; widths 1, 3, 6, 4, 4 x `channels`, as 64-192-384-256-256), overlapping 3x3
    stride-2 pooling after the 1st, 2nd and 5th, then three FC layers with dropout before the
    first two."""
    c, norm, act = cfg.channels, cfg.normalization, cfg.activation
    widths = [c, 3 * c, 6 * c, 4 * c, 4 * c]
    layers = [
        *conv_block(3, widths[0], 5, 1, norm, act),
        *downsample(cfg.pooling, widths[0], 3, 2, norm, act),  # 32 -> 15
        *conv_block(widths[0], widths[1], 5, 1, norm, act),
        *downsample(cfg.pooling, widths[1], 3, 2, norm, act),  # -> 7
        *conv_block(widths[1], widths[2], 3, 1, norm, act),
        *conv_block(widths[2], widths[3], 3, 1, norm, act),
        *conv_block(widths[3], widths[4], 3, 1, norm, act),
        *downsample(cfg.pooling, widths[4], 3, 2, norm, act),  # -> 3
    ]
    return nn.Sequential(*layers, nn.Flatten(),
                         nn.Dropout(cfg.dropout), nn.Linear(widths[4] * 3 * 3, cfg.fc_width),
                         ACTIVATION_LAYERS[act](),
                         nn.Dropout(cfg.dropout), nn.Linear(cfg.fc_width, cfg.fc_width),
                         ACTIVATION_LAYERS[act](), nn.Linear(cfg.fc_width, CLASSES))


@dataclass(frozen=True)
class Architecture:
    build: Callable[[DictConfig], nn.Sequential]
    keys: tuple[str, ...]  # the model.* keys this network has


ARCHITECTURES: dict[str, Architecture] = {
    "cnn": Architecture(build_cnn, ("channels", "activation", "pooling", "dropout", "kernel_size",
                                    "stages", "convs_per_stage", "normalization", "fc_layers",
                                    "fc_width")),
    "lenet5": Architecture(build_lenet5, ("channels", "activation", "pooling")),
    "alexnet": Architecture(build_alexnet, ("channels", "activation", "pooling", "dropout",
                                            "normalization", "fc_width")),
}


def build_model(model_cfg: DictConfig) -> nn.Sequential:
    return ARCHITECTURES[model_cfg.arch].build(model_cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_image(model_cfg: DictConfig) -> int:
    """Multiply-accumulates of one forward pass on one image, convolutions and linear layers
    (the arithmetic that decides a trial's time; normalization and activations are not
    counted). Built on the meta device: shapes only, no memory, so a network too large to train
    is still priced (and then fails as a trial, with its reason)."""
    with torch.device("meta"):
        model, macs = build_model(model_cfg), []

    def count(layer: nn.Module, _: tuple, output: torch.Tensor) -> None:
        weight = layer.weight
        per_output = weight[0].numel()  # inputs each output element sums over
        macs.append(per_output * output[0].numel())

    for layer in model.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            layer.register_forward_hook(count)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, SIDE, SIDE, device="meta"))
    return sum(macs)

