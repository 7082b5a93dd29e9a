"""Synthetic study tables with known truth, shaped like study.stats.frames.trials_frame, the
specs of the studies they stand for, and Optuna studies holding them (`study_from_table`): what
the statistics' seeded simulations (scripts/simulate_stats.py) and the tests feed the analysis
and the report without training anything."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from study.design.designs import FactorSpec
from study.design.factors import FACTORS
from study.design.spec import SPEC_ATTR, StudySpec, design_order
from study.stats.frames import ACCURACY, SAMPLE_ACCURACY
from study.stats.ranking import PRACTICAL_EFFECT, Analysis, rank_trials
from study.stats.replication import plan_look, with_added_seeds

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
            "seed": seed, **params, ACCURACY: accuracy, SAMPLE_ACCURACY: None, "bn_stats": None,
            "wall_time_s": 1.0, "epochs_run": 2,
            "started": None, "ended": None,  # a table was never run
            "device": "table", "code": "test", "reason": None}


def _like_trials_frame(rows: list[dict]) -> pd.DataFrame:
    """The dtypes study.stats.frames.trials_frame gives: nullable ints for int factors and seeds."""
    return pd.DataFrame(rows).astype({"channels": "Int64", "batch_size": "Int64", "seed": "Int64"})


def ofat_points(levels: dict[str, list]) -> list[tuple[str, dict, str]]:
    """OFAT's design points over BASE: (id, params, the factor it varies; '' at the baseline)."""
    return [("baseline", BASE, "")] + [(f"{f}={v}", BASE | {f: v}, f)
                                       for f, vs in levels.items() for v in vs]


def ofat_table(shifts: dict[str, float], noise: float, seeds: int = 5,
               rng: np.random.Generator | None = None, levels: dict[str, list] | None = None,
               diverged: dict[str, list[int]] | None = None,
               baseline_seeds: int = 0) -> pd.DataFrame:
    """OFAT trials: every non-baseline level of factor f shifts accuracy by shifts[f] (a key
    "f=level" shifts that level alone).
    levels: the non-baseline levels (default LEVELS); diverged: design point -> the seeds that
    diverge there (outcome diverged, chance accuracy); baseline_seeds: the baseline's
    replicates, when more than `seeds`."""
    rng = rng or np.random.default_rng(0)
    diverged = diverged or {}
    points = [(point, params, 0.0 if point == "baseline" else
               shifts.get(point, shifts.get(factor, 0.0)))
              for point, params, factor in ofat_points(levels or LEVELS)]
    rows = [_row(len(points) * s + i, point, s, params, 0.7 + shift + rng.normal(0, noise))
            for s in range(seeds) for i, (point, params, shift) in enumerate(points)]
    rows += [_row(len(rows) + s, "baseline", seeds + s, BASE, 0.7 + rng.normal(0, noise))
             for s in range(baseline_seeds - seeds)]
    for row in rows:
        if row["seed"] in diverged.get(row["design_point"], []):
            row.update(outcome="diverged", **{ACCURACY: 0.1})
    return _like_trials_frame(rows)


NOISE_CASES = ("gaussian", "unequal", "t3", "lost")  # seed noise of `seed_noise`
# "unequal": 3x the seed std at the shipped design's noisiest levels (the highest lr, sigmoid)
NOISY_POINTS = ("lr=0.5", "activation=sigmoid")
LOST_SHARE, LOST_POINTS = 0.1, 0.05  # "lost": the share of seeds that lose that much accuracy


def seed_noise(table: pd.DataFrame, case: str, sigma: float, rng: np.random.Generator,
               noisy: tuple[str, ...] = NOISY_POINTS) -> pd.DataFrame:
    """The table with seed noise of std sigma added to its converged accuracies, shaped like
    real seed noise: "gaussian"; "unequal": 3 sigma at the `noisy` points; "t3": Student's t with
    3 df scaled to std sigma (heavy tails); "lost": Gaussian, and one seed in ten loses 5 points
    (a run that went wrong without diverging)."""
    table = table.copy()
    done = table["outcome"] == "complete"
    n = int(done.sum())
    noise = (sigma * rng.standard_t(3, n) / np.sqrt(3) if case == "t3"
             else rng.normal(0, sigma, n))
    if case == "unequal":
        noise *= np.where(table.loc[done, "design_point"].isin(noisy), 3.0, 1.0)
    if case == "lost":
        noise -= LOST_POINTS * (rng.uniform(size=n) < LOST_SHARE)
    table.loc[done, ACCURACY] = table.loc[done, ACCURACY].astype(float) + noise
    return table


def replicated_until_decided(shifts: dict[str, float], levels: dict[str, list], seeds: int,
                             baseline_seeds: int, looks: int, case: str, sigma: float,
                             rng: np.random.Generator, max_trials: int = 5000,
                             practical_effect: float = PRACTICAL_EFFECT,
                             on_look: Callable[[Analysis], None] | None = None
                             ) -> tuple[Analysis, StudySpec]:
    """An OFAT study (shifts as in ofat_table, seed noise as in seed_noise) that adds seeds
    until its factors are decided, as `sweep.until=decided` does (study.stats.replication), at
    most `looks` looks and `max_trials` trials: the analysis of its last look, and its spec
    (the looks in look_log); `on_look` sees every look's analysis. Every trial's noise is drawn
    once, when its seed is added."""
    spec = replace(ofat_spec(levels), seeds=list(range(seeds)),
                   baseline_seeds=list(range(max(seeds, baseline_seeds))), looks=looks)
    truth = {point: (params, 0.0 if point == "baseline" else shifts.get(point,
                                                                        shifts.get(factor, 0.0)))
             for point, params, factor in ofat_points(levels)}
    table, trained = pd.DataFrame(), set()
    while True:
        new = [(point, seed) for point in truth for seed in spec.point_seeds(point)
               if (point, seed) not in trained]
        rows = [_row(len(table) + i, point, seed, truth[point][0], 0.7 + truth[point][1])
                for i, (point, seed) in enumerate(new)]
        table = pd.concat([table, seed_noise(_like_trials_frame(rows), case, sigma, rng)],
                          ignore_index=True)
        trained |= set(new)
        analysis = rank_trials(table, spec, practical_effect, advise=False)
        if on_look is not None:
            on_look(analysis)
        look = plan_look(analysis, spec, len(table), max_trials - spec.total_trials(), None,
                         None)
        spec = with_added_seeds(spec, look)
        if look.stop:
            return analysis, spec


def ofat_epochs(shifts: list[dict[str, float]], noise: float, seeds: int, baseline_seeds: int,
                rng: np.random.Generator) -> tuple[pd.DataFrame, dict[int, list[float]]]:
    """OFAT trials tested after each epoch: after epoch e every non-baseline level of factor f
    shifts accuracy by shifts[e][f]; each trial's noise is mostly its own (one draw for all its
    epochs), as a seed's. Returns the trials (accuracy: the last epoch's) and their curves."""
    rows, curves = [], {}
    for point, params, factor in ofat_points(LEVELS):
        for seed in range(baseline_seeds if point == "baseline" else seeds):
            own = rng.normal(0, noise)
            curve = [0.5 + 0.05 * e + (shift.get(factor, 0.0) if factor else 0.0) + own
                     + rng.normal(0, noise / 3) for e, shift in enumerate(shifts)]
            curves[len(rows)] = curve
            rows.append(_row(len(rows), point, seed, params, curve[-1]))
    return _like_trials_frame(rows), curves


def curves_table(trials: pd.DataFrame, curves: dict[int, list[float]]) -> pd.DataFrame:
    """The curves as study.stats.frames.curves_frame gives them (test accuracy per epoch)."""
    return pd.DataFrame([{"number": n, "epoch": e + 1, ACCURACY: value}
                         for n, curve in curves.items() for e, value in enumerate(curve)
                         if n in set(trials["number"])], columns=["number", "epoch", ACCURACY])


def ofat_spec(levels: dict[str, list]) -> StudySpec:
    """The spec of an OFAT study over these non-baseline levels (the baseline joins them)."""
    return table_spec("ofat", {f: [BASE[f], *vs] for f, vs in levels.items()})


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


def sampled_table(spec: StudySpec, trials: int, noise: float,
                  rng: np.random.Generator) -> pd.DataFrame:
    """Trials of a sampler's design (spec: a sampled one, each float factor's levels its range,
    log-uniform where the factor is on a log scale) where nothing has an effect."""
    def draw(factor: FactorSpec) -> object:
        if factor.kind == "categorical":
            return str(rng.choice(factor.levels))
        low, high = (np.log(factor.levels[0]), np.log(factor.levels[-1])) if factor.log else (
            factor.levels[0], factor.levels[-1])
        value = rng.uniform(low, high)
        return float(np.exp(value) if factor.log else value)

    return _like_trials_frame([
        _row(i, f"trial {i}", 0, BASE | {name: draw(f) for name, f in spec.factors.items()
                                         if f.varied}, 0.7 + rng.normal(0, noise))
        for i in range(trials)])


SHAPES = {"ofat": OFAT, "grid": GRID, "one level": ofat_spec({"lr": [0.1]})}


def random_table(shape: str, seeds: int, noise: float, effect: float, diverge: float,
                 fail: float, seed: int) -> pd.DataFrame:
    """A study table of one of SHAPES with planted effects, and each trial diverged with
    probability `diverge` or failed with probability `fail`: what the report must survive."""
    rng = np.random.default_rng(seed)
    if shape == "grid":
        table = grid_table(interaction=effect, noise=noise, seeds=seeds, rng=rng)
    else:
        levels = {"lr": [0.1]} if shape == "one level" else None
        table = ofat_table({"lr": effect, "activation": -effect}, noise=noise, seeds=seeds,
                           rng=rng, levels=levels)
    draw = rng.uniform(size=len(table))
    table.loc[draw < diverge, ["outcome", ACCURACY]] = ["diverged", 0.1]
    failed = draw > 1 - fail
    table.loc[failed, ["state", "outcome", ACCURACY, "reason"]] = ["FAIL", "failed", None,
                                                                   "RuntimeError: planted"]
    return table


def study_from_table(table: pd.DataFrame, spec: StudySpec, name: str = "table",
                     curves: dict[int, list[float]] | None = None,
                     storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """An Optuna study (in memory, or in `storage`) holding these trials as the sweep records
    them (spec, params, outcome, reason, training-sample accuracy, curves; test accuracy per
    epoch from `curves`, by trial number), for tests of the report that need no training."""
    study = optuna.create_study(study_name=name, direction="maximize", storage=storage)
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    distributions = spec.distributions()
    for row in table.to_dict("records"):
        params = {f: (int(row[f]) if spec.factors[f].kind == "int" else row[f])
                  for f in spec.factors}
        failed = row["state"] == "FAIL"
        curve = (curves or {}).get(row["number"], [])
        epochs = max(2, len(curve))
        attrs = {"design_point": row["design_point"], "seed": int(row["seed"]),
                 "outcome": row["outcome"], "wall_time_s": 1.0, "device": row["device"],
                 "code": row["code"], "train_loss": list(np.linspace(2.0, 1.5, epochs)),
                 "train_accuracy": list(np.linspace(0.3, 0.5, epochs))}
        if failed:
            attrs["reason"] = "RuntimeError: planted failure"
        if pd.notna(row.get(SAMPLE_ACCURACY)):
            attrs[SAMPLE_ACCURACY] = float(row[SAMPLE_ACCURACY])
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, user_attrs=attrs,
            state=TrialState.FAIL if failed else TrialState.COMPLETE,
            value=None if failed else float(row[ACCURACY]),
            intermediate_values={} if failed else {e + 1: v for e, v in enumerate(curve)}))
    return study
