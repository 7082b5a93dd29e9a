"""Designs: which factor settings a study trains, one `Design` object each, in DESIGNS.

- `ofat`: the baseline plus, for each varied factor, each of its other levels with everything
  else at the baseline; a factor's levels are compared on that slice.
- `grid`: the full factorial over the varied factors; the others stay at the baseline.
- `optuna`: a sampler draws points from the varied factors' ranges; there is no fixed list.
- `hydra`: the jobs of `python -m study.train` (a Hydra multirun), each recording itself.
Fixed designs are replicated over the study's seeds (OFAT's baseline point over its own, more,
seeds: the replicated centre point of classical design of experiments). The grid, optuna and
hydra designs compare a factor's levels by marginal means over all trials.

Adding a design: a subclass here, its entry in DESIGNS, a `conf/sweep/<name>.yaml`, and tests.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from study.errors import ConfigError


@dataclass
class FactorSpec:
    """A factor as a study records it: enough to train, slice and label it without the code's
    factor registry (which may have changed since)."""

    key: str  # dotted config key
    kind: str  # categorical | int | float
    log: bool  # log scale
    baseline: Any  # its value everywhere it is not varied
    levels: list[Any] = field(default_factory=list)  # design order, the baseline included
    varied: bool = False  # does the design vary it


@dataclass(frozen=True)
class DesignPoint:
    id: str  # "baseline", "lr=0.1", or "lr=0.1,batch_size=64"
    params: dict[str, Any]  # a value for every factor


class Design:
    name = ""
    sampled = False  # a sampler proposes the points: levels are a range, not a list to grow
    on_slices = False  # levels compared with the other factors at the baseline (else marginal)
    fixed = True  # the points are known up front and wait in the study's queue
    varies_every_factor = False  # no sweep.levels: each trial sets every factor itself

    def levels(self, listed: list[Any], baseline: Any) -> list[Any]:
        """A varied factor's levels from its sweep.levels entry: the baseline joins them."""
        return list(dict.fromkeys([*listed, baseline]))

    def points(self, factors: dict[str, FactorSpec]) -> list[DesignPoint]:
        raise NotImplementedError(f"the {self.name} design has no fixed list of points")

    def total_trials(self, n_trials: int | None) -> int:
        """Trials in all of a design without fixed points (fixed ones: StudySpec.total_trials)."""
        raise NotImplementedError(f"the {self.name} design has fixed points")

    def fixes_baseline(self, factor: FactorSpec) -> bool:
        """Whether the factor's baseline value decides what this design trains (a study's
        identity then includes it)."""
        return not factor.varied

    def check(self, cfg: DictConfig) -> None:
        """Config rules of this design; ConfigError names the key."""


class OneFactorAtATime(Design):
    name = "ofat"
    on_slices = True

    def points(self, factors: dict[str, FactorSpec]) -> list[DesignPoint]:
        base = baseline(factors)
        points = [DesignPoint("baseline", base)]
        for name, factor in factors.items():
            points += [DesignPoint(f"{name}={level}", base | {name: level})
                       for level in factor.levels if factor.varied and level != factor.baseline]
        return points

    def fixes_baseline(self, factor: FactorSpec) -> bool:
        return True  # the centre of the design: every point but one factor sits at it


class FullGrid(Design):
    name = "grid"

    def levels(self, listed: list[Any], baseline: Any) -> list[Any]:
        return list(dict.fromkeys(listed))

    def points(self, factors: dict[str, FactorSpec]) -> list[DesignPoint]:
        base = baseline(factors)
        names = [name for name, factor in factors.items() if factor.varied]
        grid = itertools.product(*(factors[name].levels for name in names))
        return [DesignPoint(",".join(f"{n}={v}" for n, v in zip(names, values, strict=True)),
                            base | dict(zip(names, values, strict=True)))
                for values in grid]

    def check(self, cfg: DictConfig) -> None:
        if not cfg.sweep.levels:
            raise ConfigError("sweep.levels is empty: the grid design needs at least one factor")


class Sampler(Design):
    name = "optuna"
    sampled, fixed = True, False

    def total_trials(self, n_trials: int | None) -> int:
        return n_trials or 0


class HydraJobs(Design):
    """Each job of the train app is one trial at whatever factor values it was given."""

    name = "hydra"
    fixed, varies_every_factor = False, True

    def total_trials(self, n_trials: int | None) -> int:
        return 0

    def fixes_baseline(self, factor: FactorSpec) -> bool:
        return False  # every job sets its own values


SWEEP_DESIGNS: dict[str, Design] = {d.name: d for d in (OneFactorAtATime(), FullGrid(),
                                                        Sampler())}
DESIGNS: dict[str, Design] = SWEEP_DESIGNS | {HydraJobs.name: HydraJobs()}


def baseline(factors: dict[str, FactorSpec]) -> dict[str, Any]:
    return {name: factor.baseline for name, factor in factors.items()}
