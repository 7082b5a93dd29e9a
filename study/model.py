"""The one configurable CNN of the study: conv stages -> pooling -> FC -> dropout -> 10 logits.

Stage s (0-based) has `channels * 2**s` kernels in each of its `convs_per_stage` convolutions and
ends by halving the spatial size with max pooling, average pooling, or (pooling=stride) a stride-2
convolution in place of the pooling layer. Every factor level of `model.*` is realised here.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

SIDE = 32
CLASSES = 10

ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def conv_block(c_in: int, c_out: int, kernel_size: int, stride: int, batch_norm: bool,
               activation: str) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2,
                     bias=not batch_norm)
    norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
    return [conv, *norm, ACTIVATION_LAYERS[activation]()]


def downsample(pooling: str, width: int, model_cfg: DictConfig) -> list[nn.Module]:
    if pooling == "max":
        return [nn.MaxPool2d(2)]
    if pooling == "avg":
        return [nn.AvgPool2d(2)]
    if pooling == "stride":
        return conv_block(width, width, model_cfg.kernel_size, 2, model_cfg.batch_norm,
                          model_cfg.activation)
    raise ValueError(f"unknown pooling {pooling!r}")


def build_model(model_cfg: DictConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for stage in range(model_cfg.stages):
        width = model_cfg.channels * 2**stage
        for _ in range(model_cfg.convs_per_stage):
            layers += conv_block(c_in, width, model_cfg.kernel_size, 1, model_cfg.batch_norm,
                                 model_cfg.activation)
            c_in = width
        layers += downsample(model_cfg.pooling, width, model_cfg)
    side = SIDE // 2**model_cfg.stages
    layers += [
        nn.Flatten(),
        nn.Linear(c_in * side * side, model_cfg.fc_width),
        ACTIVATION_LAYERS[model_cfg.activation](),
        nn.Dropout(model_cfg.dropout),
        nn.Linear(model_cfg.fc_width, CLASSES),
    ]
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

