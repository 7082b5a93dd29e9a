"""Designs: which factor settings a study trains, and how Optuna records each factor.

- `ofat`: the baseline (the factor values in the model/data/train configs) plus, for each factor in
  `sweep.levels`, each of its other levels with everything else at the baseline.
- `grid`: the full factorial over the factors in `sweep.levels`; the others stay at the baseline.
- `optuna`: a sampler draws points from `distributions(cfg)`; there is no fixed list.
Fixed designs are replicated over `sweep.seeds` seeds (train.seed, train.seed + 1, ...).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from study.config import FACTORS, applicable_factors

LOG_SCALE = {"lr", "channels", "batch_size"}  # factors whose levels span orders of magnitude


@dataclass(frozen=True)
class DesignPoint:
    id: str  # "baseline", "lr=0.1", or "lr=0.1,batch_size=64"
    params: dict[str, Any]  # a value for every factor


def baseline(cfg: DictConfig) -> dict[str, Any]:
    """The configured value of every factor the network has."""
    return {name: OmegaConf.select(cfg, factor.key)
            for name, factor in applicable_factors(cfg).items()}


def levels(cfg: DictConfig) -> dict[str, list[Any]]:
    """Every factor's levels in config order, the baseline value included."""
    base = baseline(cfg)
    result = {}
    for name in base:
        listed = list(cfg.sweep.levels.get(name, []))
        result[name] = list(dict.fromkeys([*listed, base[name]]))  # ordered, no repeats
    return result


def ofat_points(cfg: DictConfig) -> list[DesignPoint]:
    base = baseline(cfg)
    points = [DesignPoint("baseline", base)]
    for name, factor_levels in cfg.sweep.levels.items():
        for level in dict.fromkeys(factor_levels):
            if level != base[name]:
                points.append(DesignPoint(f"{name}={level}", base | {name: level}))
    return points


def grid_points(cfg: DictConfig) -> list[DesignPoint]:
    base = baseline(cfg)
    names = list(cfg.sweep.levels)
    grid = itertools.product(*(dict.fromkeys(cfg.sweep.levels[n]) for n in names))
    return [DesignPoint(",".join(f"{n}={v}" for n, v in zip(names, values, strict=True)),
                        base | dict(zip(names, values, strict=True)))
            for values in grid]


def fixed_points(cfg: DictConfig) -> list[DesignPoint]:
    return ofat_points(cfg) if cfg.sweep.design == "ofat" else grid_points(cfg)


def replicate_seeds(cfg: DictConfig) -> list[int]:
    return [cfg.train.seed + r for r in range(cfg.sweep.seeds)]


def distributions(cfg: DictConfig) -> dict[str, BaseDistribution]:
    """How Optuna records each factor: categorical for names, int/float ranges for numbers."""
    result: dict[str, BaseDistribution] = {}
    for name, factor_levels in levels(cfg).items():
        kind = FACTORS[name].kind
        if kind == "categorical":
            result[name] = CategoricalDistribution(factor_levels)
        elif kind == "int":
            result[name] = IntDistribution(min(factor_levels), max(factor_levels),
                                           log=name in LOG_SCALE)
        else:
            result[name] = FloatDistribution(min(factor_levels), max(factor_levels),
                                             log=name in LOG_SCALE)
    return result


def apply_params(cfg: DictConfig, params: dict[str, Any], seed: int) -> DictConfig:
    """A copy of cfg with the trial's factor values and seed."""
    trial_cfg = cfg.copy()
    for name, value in params.items():
        OmegaConf.update(trial_cfg, FACTORS[name].key, value)
    trial_cfg.train.seed = seed
    return trial_cfg
