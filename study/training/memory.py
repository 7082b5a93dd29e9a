"""What training a network needs in memory, and what the device has: checked before any trial
starts (study.design.cost.check_memory), so that a network no machine could hold is one line
instead of one failed trial after another."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from study.training.data import SIDE
from study.training.model import build_model, count_parameters

FLOAT_BYTES = 4
STATE_COPIES = 4  # weights, gradients and up to two optimizer buffers (Adam), each fp32
SAVED_COPIES = 2  # each layer's output, kept for the backward pass, and its gradient
# a worker process with torch, Optuna and the study loaded, before its images (measured: 1.2-1.4
# GiB each of the quick study's two workers on the 2-core CPU, CIFAR-10 loaded)
WORKER_BYTES = 2**30
IMAGE_BYTES = 3 * SIDE * SIDE * (1 + FLOAT_BYTES)  # uint8 as loaded, fp32 as trained on


def training_bytes(model_cfg: DictConfig, batch_size: int) -> int:
    """About what training the network in fp32 takes: its parameters' state, and every layer's
    output for one batch. Built on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        model = build_model(model_cfg)
    outputs = []

    def count(_layer: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        outputs.append(output.numel())

    for layer in model.modules():
        if not list(layer.children()):
            layer.register_forward_hook(count)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, SIDE, SIDE, device="meta"))
    return FLOAT_BYTES * (STATE_COPIES * count_parameters(model) +
                          SAVED_COPIES * batch_size * sum(outputs))


def worker_bytes(images: int) -> int:
    """About what a worker process holds at least, with `images` training and test images."""
    return WORKER_BYTES + images * IMAGE_BYTES


def available_bytes(device: torch.device) -> int | None:
    """The device's memory a trial can have: a GPU's total, the CPU's available memory
    (MemAvailable); None where it cannot be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
