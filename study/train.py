"""Train one trial: `train_trial(cfg, data)` -> TrialResult; `python -m study.train` runs one.

Data is already preprocessed on the device (study.data); augmentation runs there per batch.
Metrics accumulate on the device and reach the host once per epoch, plus a cheap finiteness check
every DIVERGENCE_CHECK_STEPS steps so that a diverging trial stops at once. On CUDA the model runs
in channels_last with bf16 autocast. A diverged trial is a result (outcome "diverged", test
accuracy = chance by the study's rule), not a crash.

    python -m study.train model.activation=gelu train.lr=0.1 budget=quick
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from study.data import DeviceData, crop_flip, load_images, pad_for_crop, to_device
from study.model import CLASSES, build_model, count_parameters

CROP_PAD = 4  # px of zero padding for random crops
DIVERGENCE_CHECK_STEPS = 50  # steps between host-side checks that the loss is finite
CHANCE_ACCURACY = 1 / CLASSES  # the test accuracy recorded for a diverged trial

log = logging.getLogger("study.train")


@dataclass
class TrialResult:
    test_accuracy: float
    outcome: str  # complete | diverged
    train_loss: list[float] = field(default_factory=list)  # per epoch
    train_accuracy: list[float] = field(default_factory=list)  # per epoch
    wall_time_s: float = 0.0
    epochs_run: int = 0
    diverged_at_step: int | None = None
    parameters: int = 0
    device: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def learning_rate(step: int, total_steps: int, train_cfg: DictConfig) -> float:
    """Linear warm-up to train.lr over `warmup` of the steps, then linear (onecycle) or cosine
    decay to zero; `constant` keeps train.lr throughout."""
    peak = train_cfg.lr
    warmup_steps = int(train_cfg.warmup * total_steps)
    if train_cfg.schedule == "constant":
        return peak
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if train_cfg.schedule == "onecycle":
        return peak * (1 - progress)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, train_cfg: DictConfig) -> torch.optim.Optimizer:
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=train_cfg.lr, momentum=train_cfg.momentum,
                               nesterov=train_cfg.nesterov and train_cfg.momentum > 0,
                               weight_decay=train_cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=train_cfg.lr,
                             betas=(train_cfg.momentum, 0.999), weight_decay=train_cfg.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    model.eval()
    cuda = x.device.type == "cuda"
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, len(y), batch_size):
        xb = x[start:start + batch_size]
        if cuda:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            correct += (model(xb).argmax(1) == y[start:start + batch_size]).sum()
    return correct.item() / len(y)


def train_trial(cfg: DictConfig, data: DeviceData,
                on_epoch: Callable[[int, float, float], None] | None = None) -> TrialResult:
    """Train cfg's model on data; on_epoch(epoch, train_loss, train_accuracy) after each epoch."""
    start = time.perf_counter()
    device = data.x_train.device
    cuda = device.type == "cuda"
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    torch.manual_seed(cfg.train.seed)
    generator = torch.Generator(device).manual_seed(cfg.train.seed)

    model = build_model(cfg.model).to(device, memory_format=memory_format)
    optimizer = make_optimizer(model, cfg.train)
    result = TrialResult(test_accuracy=CHANCE_ACCURACY, outcome="complete",
                         parameters=count_parameters(model), device=device_name(device))

    n = len(data.y_train)
    batch_size = min(cfg.train.batch_size, n)
    steps_per_epoch = n // batch_size  # the last partial batch is dropped
    total_steps = cfg.train.epochs * steps_per_epoch
    x_train = pad_for_crop(data.x_train, CROP_PAD) if cfg.train.augment else data.x_train

    step = 0
    for epoch in range(cfg.train.epochs):
        model.train()
        order = torch.randperm(n, device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        for i in range(steps_per_epoch):
            index = order[i * batch_size:(i + 1) * batch_size]
            x = x_train[index]
            if cfg.train.augment:
                x = crop_flip(x, CROP_PAD, generator)
            x = x.contiguous(memory_format=memory_format)
            y = data.y_train[index]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, cfg.train)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().float() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            step += 1
            if step % DIVERGENCE_CHECK_STEPS == 0 and not torch.isfinite(loss_sum):
                break
        epoch_loss = loss_sum.item() / seen
        result.epochs_run = epoch + 1
        if not math.isfinite(epoch_loss):
            result.outcome, result.diverged_at_step = "diverged", step
            break
        result.train_loss.append(epoch_loss)
        result.train_accuracy.append(correct.item() / seen)
        if on_epoch:
            on_epoch(epoch, epoch_loss, result.train_accuracy[-1])

    if result.outcome == "complete":
        result.test_accuracy = evaluate(model, data.x_test, data.y_test, cfg.train.eval_batch_size)
    result.wall_time_s = time.perf_counter() - start
    return result


def run_one(cfg: DictConfig) -> None:
    device = pick_device()
    images = load_images(cfg.data)
    data = to_device(images, cfg.data.preprocessing, device, cfg.data.zca_epsilon)
    log.info("%s on %s; training %d epochs", images.source, device_name(device), cfg.train.epochs)
    result = train_trial(cfg, data, on_epoch=lambda e, loss, acc: log.info(
        "epoch %d: train loss %.4f, train accuracy %.4f", e + 1, loss, acc))
    log.info("%s: test accuracy %.4f in %.1f s (%d parameters)", result.outcome,
             result.test_accuracy, result.wall_time_s, result.parameters)


def main() -> None:
    from study.cli import run_app

    run_app(run_one, "train")


if __name__ == "__main__":
    main()
