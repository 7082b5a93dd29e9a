"""Analysis as data: a study's trials and training curves as DataFrames, the seed noise, and the
slice of trials that compares each factor's levels (statistics: study.stats).

Factors, levels, their order and the baseline come from the study's spec (study.spec), never
from the code's factor registry, which may have changed since the study ran. Plotting and report
writing (study.plots, study.report) only consume what these return.

Rules, applied explicitly:
- A diverged trial is a result of its settings, analysed as its own outcome: it counts in its
  level's divergence rate, not in accuracy (it records chance accuracy, 0.1, which would swamp
  every accuracy comparison and the noise floor). Accuracy is compared among converged trials.
- A failed trial (an exception, an interruption) has no result; it is listed, not analysed.
- In an OFAT study a factor's levels are compared on its own slice: the trials whose other
  factors are all at the baseline. In grid and optuna studies they are marginal means over all
  finished trials (numeric factors with many distinct values are binned into quartiles).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pandas as pd
from pandas.core.groupby import SeriesGroupBy

from study.spec import StudySpec

ACCURACY = "test_accuracy"
MAX_LEVELS = 8  # more distinct values than this (sampled numeric factors) are binned
# Every failure this tool records has a reason; a failed trial without one was failed for its
# missing heartbeat: the worker training it was killed or lost.
NO_HEARTBEAT = "no heartbeat: the worker training it was killed or lost"


def trials_frame(study: optuna.Study, spec: StudySpec) -> pd.DataFrame:
    """One row per trial of the study, whatever its state: a column per factor of the spec."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        rows.append({
            "number": t.number, "state": t.state.name,
            "outcome": attrs.get("outcome", t.state.name.lower()),
            "design_point": attrs.get("design_point"), "seed": attrs.get("seed"),
            **{name: t.params.get(name) for name in spec.factors},
            ACCURACY: t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
            "wall_time_s": attrs.get("wall_time_s"), "epochs_run": attrs.get("epochs_run"),
            "device": attrs.get("device"), "code": attrs.get("code"),
            "reason": attrs.get("reason", NO_HEARTBEAT if t.state.name == "FAIL" else None),
        })
    frame = pd.DataFrame(rows, columns=["number", "state", "outcome", "design_point", "seed",
                                        *spec.factors, ACCURACY, "wall_time_s", "epochs_run",
                                        "device", "code", "reason"])
    return frame.astype(_int_columns(spec, "seed", "epochs_run"))


def _int_columns(spec: StudySpec, *others: str) -> dict[str, str]:
    """Nullable integers for int factors and counts: waiting trials have no values yet."""
    ints = [name for name, factor in spec.factors.items() if factor.kind == "int"]
    return dict.fromkeys([*ints, *others], "Int64")


def curves_frame(study: optuna.Study, spec: StudySpec) -> pd.DataFrame:
    """Tidy per-epoch curves: one row per (trial, epoch) of the finished trials, with the test
    accuracy after that epoch (the trial's intermediate value; NaN where none was recorded)."""
    rows = [{"number": t.number, "design_point": t.user_attrs.get("design_point"),
             "seed": t.user_attrs.get("seed"), **{f: t.params.get(f) for f in spec.factors},
             "epoch": epoch + 1, "train_loss": loss, "train_accuracy": accuracy,
             ACCURACY: t.intermediate_values.get(epoch + 1, np.nan)}
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            for epoch, (loss, accuracy) in enumerate(zip(t.user_attrs.get("train_loss", []),
                                                         t.user_attrs.get("train_accuracy", []),
                                                         strict=False))]
    frame = pd.DataFrame(rows, columns=["number", "design_point", "seed", *spec.factors, "epoch",
                                        "train_loss", "train_accuracy", ACCURACY])
    return frame.astype(_int_columns(spec))


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials with a result: converged or diverged."""
    return trials[trials["state"] == "COMPLETE"]


def converged(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished trials that did not diverge: the ones whose accuracy is compared."""
    return trials[(trials["state"] == "COMPLETE") & (trials["outcome"] == "complete")]


def factor_slice(done: pd.DataFrame, factor: str, spec: StudySpec) -> pd.DataFrame:
    """The trials that compare this factor's levels (see the module's rules)."""
    if not spec.kind.on_slices:
        return done
    others = [f for f in spec.factors if f != factor]
    if not others:
        return done
    baseline = pd.Series({f: spec.baseline[f] for f in others})
    return done[(done[others] == baseline).all(axis=1)]


def level_labels(values: pd.Series) -> pd.Series:
    """The levels to compare: the values, or quartile bins for many distinct numeric values."""
    if values.nunique() <= MAX_LEVELS or not pd.api.types.is_numeric_dtype(values):
        return values
    return pd.qcut(values, 4, duplicates="drop").astype(str)


def level_slice(frame: pd.DataFrame, factor: str, spec: StudySpec) -> pd.DataFrame:
    """The factor's slice with the level each trial is compared at, in a `level` column."""
    part = factor_slice(frame, factor, spec)
    return part.assign(level=level_labels(part[factor]))


def level_order(spec: StudySpec, factor: str, present: list[Any]) -> list[Any]:
    """The levels present, in the spec's design order; others (bins of sampled values, levels
    the spec does not list) after them, sorted."""
    listed = [level for level in spec.factors[factor].levels if level in present]
    return listed + sorted(level for level in present if level not in listed)


def labelled_slice(frame: pd.DataFrame, factor: str, spec: StudySpec
                   ) -> tuple[pd.DataFrame, list[str]]:
    """The factor's slice with its levels as text labels (for categorical plot axes), and the
    labels in design order."""
    part = level_slice(frame, factor, spec)
    order = [str(v) for v in level_order(spec, factor, list(part["level"].unique()))]
    return part.assign(level=part["level"].astype(str)), order


def pooled_std(groups: SeriesGroupBy) -> tuple[float, int]:
    """Pooled within-group standard deviation and its degrees of freedom (NaN and 0 when no
    group has two values)."""
    dof = (groups.count() - 1).clip(lower=0)
    if dof.sum() == 0:
        return float("nan"), 0
    return float(np.sqrt((groups.var(ddof=1).fillna(0) * dof).sum() / dof.sum())), int(dof.sum())


def seed_noise(trials: pd.DataFrame) -> dict[str, float]:
    """Seed-to-seed std of the converged trials' test accuracy: at the baseline (with its mean),
    and pooled over all design points (NaN where no point has two converged seeds, e.g. sampled
    designs)."""
    done = converged(trials)
    base = done.loc[done["design_point"] == "baseline", ACCURACY]
    return {"baseline_std": base.std() if len(base) > 1 else float("nan"),
            "baseline_mean": base.mean() if len(base) else float("nan"),
            "baseline_seeds": len(base),
            "pooled_std": pooled_std(done.groupby("design_point")[ACCURACY])[0]}


def noise_band(noise: dict[str, float]) -> tuple[float, float] | None:
    """The baseline's mean +- 2 seed std (what seed noise alone moves a level by), from
    `seed_noise`; None where the baseline has no two converged seeds."""
    if pd.isna(noise["baseline_std"]):
        return None
    return (noise["baseline_mean"] - 2 * noise["baseline_std"],
            noise["baseline_mean"] + 2 * noise["baseline_std"])


def design_table(trials: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Per design point: trials in the study, finished ones, mean and seed std of accuracy; in
    `order` (the design's), then any other points in the order their trials were made."""
    done = finished(trials).groupby("design_point", sort=False)[ACCURACY]
    table = pd.DataFrame({"trials": trials.groupby("design_point", sort=False).size(),
                          "finished": done.count(), "mean": done.mean(), "std": done.std()})
    present = list(trials["design_point"].dropna().unique())
    listed = [p for p in order or [] if p in present]
    table = table.reindex(listed + [p for p in present if p not in listed])
    table["finished"] = table["finished"].fillna(0).astype(int)
    return table.reset_index(names="design_point")


def outcome_counts(trials: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in trials["outcome"].value_counts().items()}
