"""How a trained network is measured: exact BatchNorm statistics, the test accuracy, the accuracy
on a fixed sample of training images that checks it, and whether the trial learned anything.

BatchNorm's running statistics are averages over the training steps, taken while the weights
moved: after few optimizer steps (a short budget, a large batch) they are far from what the
current weights produce, and a network tested with them can sit at chance while it classifies
its training images well. So before each test (`Evaluation`, `train.bn_stats=exact`) every
BatchNorm layer's mean and variance are recomputed from the current weights over a fixed sample
of training images (unaugmented, as preprocessed), with the layers normalising by each batch's
statistics and averaging them, dropout off: the practice of PreciseBN (pycls, Detectron2) and
`torch.optim.swa_utils.update_bn`. The same pass counts the sample's correct predictions: the
network's accuracy on training images as training normalises them, which the report holds
against the test accuracy (a level far below its own training accuracy points at an evaluation
artefact). Training's own statistics are written back in place afterwards (a CUDA graph of the
step holds their addresses), so a trial trains bit-identically however it is measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from study.training.data import CLASSES

BN_STATS = ("exact", "running")  # train.bn_stats
CHANCE_ACCURACY = 1 / CLASSES
# A trial learned nothing when its accuracy on training images stays within this many binomial
# standard errors of chance (one-sided: 0.13% of trials at chance would pass it by luck)
CHANCE_SE = 3.0
# Images per batch of the recomputation. Its batches' statistics are averaged (each batch's
# variance leaves out the spread of the batch means, 1/BN_BATCH of the variance), so the batch
# size is part of what is measured: fixed here, not train.eval_batch_size, which only says how
# many images the test evaluates at a time
BN_BATCH = 500


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """The model's BatchNorm layers that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def sample_indices(n_train: int, n_sample: int) -> torch.Tensor:
    """A fixed random sample of the training images, the same for every trial and seed (the
    training split may be sorted by class)."""
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(0))[:n_sample]


def at_chance(accuracy: float, images: int) -> bool:
    """Whether an accuracy over `images` images is within CHANCE_SE standard errors of chance."""
    se = math.sqrt(CHANCE_ACCURACY * (1 - CHANCE_ACCURACY) / images)
    return accuracy <= CHANCE_ACCURACY + CHANCE_SE * se


@torch.no_grad()
def count_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                  bf16: bool) -> torch.Tensor:
    """The correct predictions of the model as it is (eval mode unless the caller set some layers
    to train) on (x, y), in batches as equal as can be (a BatchNorm layer in train mode averages
    the batches' statistics with equal weights); a device tensor: no host synchronisation."""
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for xb, yb in zip(x.tensor_split(math.ceil(len(y) / batch_size)),
                      y.tensor_split(math.ceil(len(y) / batch_size)), strict=True):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        correct += (logits.argmax(1) == yb).sum()
    return correct


@dataclass
class BatchNormState:
    """A BatchNorm layer's running statistics and momentum, to put back after a measurement."""

    layer: _BatchNorm
    mean: torch.Tensor
    var: torch.Tensor
    batches: torch.Tensor
    momentum: float | None

    @classmethod
    def save(cls, layer: _BatchNorm) -> BatchNormState:
        return cls(layer, layer.running_mean.clone(), layer.running_var.clone(),
                   layer.num_batches_tracked.clone(), layer.momentum)

    @torch.no_grad()
    def restore(self) -> None:
        self.layer.running_mean.copy_(self.mean)  # in place: a captured graph reads these
        self.layer.running_var.copy_(self.var)
        self.layer.num_batches_tracked.copy_(self.batches)
        self.layer.momentum = self.momentum


class Evaluation:
    """Measures a model during its training: call it after an epoch for the correct predictions
    on the training sample and on the test set (device tensors). With `exact` the test uses
    BatchNorm statistics recomputed over the sample; else the running ones. Either way the
    model leaves with training's own statistics and in eval mode."""

    def __init__(self, model: nn.Module, x_sample: torch.Tensor, y_sample: torch.Tensor,
                 x_test: torch.Tensor, y_test: torch.Tensor, batch_size: int, bf16: bool,
                 exact: bool) -> None:
        self.model, self.layers = model, batch_norms(model)
        self.x_sample, self.y_sample, self.x_test, self.y_test = x_sample, y_sample, x_test, y_test
        self.batch_size, self.bf16, self.exact = batch_size, bf16, exact

    @property
    def bn_stats(self) -> str:
        """What the test normalised with: exact | running | none (no BatchNorm layer)."""
        return ("exact" if self.exact else "running") if self.layers else "none"

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        saved = [BatchNormState.save(layer) for layer in self.layers]
        self.model.eval()
        for layer in self.layers:  # batch statistics, averaged with equal weights per batch
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
        sample = count_correct(self.model, self.x_sample, self.y_sample, BN_BATCH, self.bf16)
        self.model.eval()
        if not self.exact:
            for state in saved:
                state.restore()
        test = count_correct(self.model, self.x_test, self.y_test, self.batch_size, self.bf16)
        for state in saved:
            state.restore()
        return sample, test
