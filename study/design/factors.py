"""The studied factors: one `Factor` record each, the one place that says what a factor is.

A factor is one config key. Its record holds its short name (the Optuna parameter, the name in
reports and in `sweep.levels`), that key, how Optuna records it (categorical, int or float; log
scale or not) and the check its values pass. A categorical factor's allowed values are the keys
of the table that realises it (study.training.model, study.training.data), so a level the code
cannot build is refused before any training.

Adding a factor: its record in FACTORS, its key in the schema and YAML (study.design.config,
conf/), its realisation (study.training.model, study.training.data or study.training.engine) and
its tests (docs/extending.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from study.training.data import PREPROCESSINGS
from study.training.model import ACTIVATION_LAYERS, ARCHITECTURES, NORMALIZATIONS, POOLINGS

Check = Callable[[Any], str | None]  # None when the value is allowed, else what is allowed


def one_of(allowed: tuple[str, ...]) -> Check:
    return lambda v: None if v in allowed else f"choose one of: {', '.join(allowed)}"


def number(low: float, high: float | None = None, *, integer: bool = False,
           low_open: bool = False, high_open: bool = True) -> Check:
    def check(v: Any) -> str | None:
        kind = "an integer" if integer else "a number"
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
            return f"must be {kind}"
        too_low = v <= low if low_open else v < low
        too_high = high is not None and (v >= high if high_open else v > high)
        if too_low or too_high or not math.isfinite(v):
            lo = f"> {low}" if low_open else f">= {low}"
            hi = "" if high is None else (f" and < {high}" if high_open else f" and <= {high}")
            return f"must be {kind} {lo}{hi}"
        return None

    return check


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def odd(check: Check) -> Check:
    """The check, and then: an odd integer (a same-padded kernel keeps the image size)."""
    return lambda v: check(v) or (None if v % 2 else "must be odd")


@dataclass(frozen=True)
class Factor:
    name: str  # the Optuna parameter and the name in reports and sweep.levels
    key: str  # dotted config key
    kind: str  # categorical | int | float: how Optuna records it
    check: Check
    log: bool = False  # levels span orders of magnitude: a log scale in Optuna and the plots
    choices: tuple[str, ...] = ()  # categorical: every value the code can build

    def value(self, level: Any) -> Any:
        """A level in the factor's own type (YAML reads dropout 0 as an int)."""
        return float(level) if self.kind == "float" else level

    def distribution(self, levels: list[Any], sampled: bool) -> BaseDistribution:
        """How Optuna records the factor. A fixed design's categorical factor lists every
        choice, so that a study can later grow levels (Optuna refuses changed choices); a sampler
        draws from the design's levels only; numbers range over the levels."""
        if self.kind == "categorical":
            return CategoricalDistribution(list(levels) if sampled else list(self.choices))
        if self.kind == "int":
            return IntDistribution(min(levels), max(levels), log=self.log)
        return FloatDistribution(min(levels), max(levels), log=self.log)


def categorical(name: str, key: str, choices: tuple[str, ...]) -> Factor:
    return Factor(name, key, "categorical", one_of(choices), choices=choices)


FACTORS: dict[str, Factor] = {factor.name: factor for factor in (
    Factor("channels", "model.channels", "int", number(1, integer=True), log=True),
    categorical("activation", "model.activation", tuple(ACTIVATION_LAYERS)),
    categorical("pooling", "model.pooling", POOLINGS),
    Factor("dropout", "model.dropout", "float", number(0, 1)),
    categorical("preprocessing", "data.preprocessing", tuple(PREPROCESSINGS)),
    Factor("batch_size", "train.batch_size", "int", number(1, integer=True), log=True),
    Factor("lr", "train.lr", "float", number(0, low_open=True), log=True),
    Factor("kernel_size", "model.kernel_size", "int",
           odd(number(1, 15, integer=True, high_open=False))),
    Factor("conv_layers", "model.convs_per_stage", "int", number(1, integer=True)),
    Factor("fc_layers", "model.fc_layers", "int", number(0, integer=True)),
    categorical("normalization", "model.normalization", tuple(NORMALIZATIONS)),
    Factor("epochs", "train.epochs", "int", number(1, integer=True)),
)}


def applicable_factors(cfg: DictConfig) -> dict[str, Factor]:
    """The factors the configured network has (LeNet-5 has no dropout, for one)."""
    keys = ARCHITECTURES[cfg.model.arch].keys
    return {name: factor for name, factor in FACTORS.items()
            if not factor.key.startswith("model.") or factor.key.split(".")[1] in keys}


def untrainable(params: dict[str, Any]) -> str | None:
    """Why a trial with these factor values cannot be trained (older versions queued values
    such as lr=nan), or None."""
    for name, value in params.items():
        problem = FACTORS[name].check(value) if name in FACTORS else None
        if problem:
            return f"{name}={value!r} cannot be trained: {problem}"
    return None
