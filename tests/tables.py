"""Synthetic results tables with known truth, shaped like study.analysis.trials_frame, and the
specs of the studies they stand for."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from study.analysis import ACCURACY
from study.designs import FactorSpec
from study.factors import FACTORS
from study.spec import StudySpec, design_order

BASE = {"channels": 32, "activation": "relu", "pooling": "max", "dropout": 0.5,
        "preprocessing": "standardize", "batch_size": 128, "lr": 0.05}
LEVELS = {"channels": [16, 64, 128], "activation": ["tanh", "gelu"], "pooling": ["avg"],
          "dropout": [0.0, 0.25], "preprocessing": ["none", "zca"], "batch_size": [64, 256],
          "lr": [0.01, 0.1]}
GRID_LEVELS = {"lr": [0.01, 0.1], "batch_size": [64, 256], "activation": ["relu", "tanh"]}


def table_spec(design: str, varied: dict[str, list]) -> StudySpec:
    """The spec of a study over BASE that varies these factors over these levels."""
    factors = {name: FactorSpec(FACTORS[name].key, FACTORS[name].kind, FACTORS[name].log,
                                BASE[name], design_order(FACTORS[name].kind,
                                                         varied.get(name, [BASE[name]])),
                                name in varied)
               for name in [*varied, *(n for n in BASE if n not in varied)]}
    return StudySpec(design=design, factors=factors, seeds=[0], setup={"budget": "full"})


OFAT = table_spec("ofat", {f: [BASE[f], *levels] for f, levels in LEVELS.items()})
GRID = table_spec("grid", GRID_LEVELS)


def _row(number: int, point: str, seed: int, params: dict, accuracy: float) -> dict:
    return {"number": number, "state": "COMPLETE", "outcome": "complete", "design_point": point,
            "seed": seed, **params, ACCURACY: accuracy}


def _like_trials_frame(rows: list[dict]) -> pd.DataFrame:
    """The dtypes study.analysis.trials_frame gives: nullable ints for int factors and seeds."""
    return pd.DataFrame(rows).astype({"channels": "Int64", "batch_size": "Int64", "seed": "Int64"})


def ofat_table(shifts: dict[str, float], noise: float, seeds: int = 5,
               rng: np.random.Generator | None = None) -> pd.DataFrame:
    """OFAT trials: every non-baseline level of factor f shifts accuracy by shifts[f]."""
    rng = rng or np.random.default_rng(0)
    points = [("baseline", BASE, 0.0)] + [
        (f"{f}={v}", BASE | {f: v}, shifts.get(f, 0.0)) for f, vs in LEVELS.items() for v in vs]
    rows = [_row(len(points) * s + i, point, s, params, 0.7 + shift + rng.normal(0, noise))
            for s in range(seeds) for i, (point, params, shift) in enumerate(points)]
    return _like_trials_frame(rows)


def grid_table(interaction: float, noise: float, seeds: int = 3,
               rng: np.random.Generator | None = None) -> pd.DataFrame:
    """A 2x2x2 grid over lr, batch_size and activation. activation has a main effect of 0.02;
    lr and batch_size have none alone, but lr=0.1 with batch_size=256 adds `interaction`."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for lr, batch, act in itertools.product(*GRID_LEVELS.values()):
        params = BASE | {"lr": lr, "batch_size": batch, "activation": act}
        mean = 0.7 + (0.02 if act == "tanh" else 0.0) + (interaction if (lr, batch) ==
                                                         (0.1, 256) else 0.0)
        point = f"lr={lr},batch_size={batch},activation={act}"
        rows += [_row(len(rows) + s, point, s, params, mean + rng.normal(0, noise))
                 for s in range(seeds)]
    return _like_trials_frame(rows)
