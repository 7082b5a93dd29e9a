"""Is the ranked accuracy the network's? The generalisation-gap check, as plain data.

Every trial records, beside its test accuracy, its final network's accuracy on a fixed sample of
training images with BatchNorm normalising by batch statistics and dropout off
(study.training.evaluation): the network as training sees it. Their difference, the gap, is
what the network fails to carry over to new images (overfitting) plus anything wrong with how it
is tested: stale BatchNorm statistics, dropout or augmentation at test time, test images
preprocessed otherwise than the training ones. Overfitting moves the gap between levels by a few
points; an artefact moves it by many. So a level is flagged where its mean gap exceeds its
factor's reference level's (the baseline's) by more than GAP_FLAG and by more than GAP_Z
standard errors of that difference (the gaps' seed std pooled over the design points with two
trials or more; without one, GAP_FLAG alone). docs/statistics.md says how both were measured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.design.spec import StudySpec
from study.stats.frames import ACCURACY, SAMPLE_ACCURACY, converged
from study.stats.slices import factor_slices, level_order, reference_level

GAP_FLAG = 0.05  # accuracy: a level's gap beyond the baseline's that flags it (5 points)
GAP_Z = 3.0  # ... and beyond this many standard errors of that difference
GAP_COLUMNS = ["factor", "level", "baseline", "n", "sample_accuracy", "test_accuracy", "gap",
               "excess", "excess_se", "flagged"]


def generalisation_gaps(trials: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """Per (factor, level) of the converged trials that recorded a training-sample accuracy:
    their number, mean training-sample and test accuracy, mean gap (sample - test), the gap
    beyond the reference level's (`excess`; NaN at the reference or without one) and whether
    it is flagged. Empty where no trial recorded one (a study made before the check)."""
    done = converged(trials).dropna(subset=[SAMPLE_ACCURACY])
    done = done.assign(gap=done[SAMPLE_ACCURACY].astype(float) - done[ACCURACY])
    std = gap_std(done)
    rows = []
    for factor, part in factor_slices(done, spec).items():
        means = part.groupby("level", sort=False).agg(
            n=("gap", "size"), sample_accuracy=(SAMPLE_ACCURACY, "mean"),
            test_accuracy=(ACCURACY, "mean"), gap=("gap", "mean"))
        present = level_order(spec, factor, list(means.index))
        if not present:
            continue
        reference = reference_level(spec, factor, present)
        ref = means.loc[reference] if reference is not None else None
        for level in present:
            row = means.loc[level]
            compared = ref is not None and level != reference
            excess = row["gap"] - ref["gap"] if compared else np.nan
            se = std * np.sqrt(1 / row["n"] + 1 / ref["n"]) if compared else np.nan
            flagged = excess > GAP_FLAG and not excess <= GAP_Z * se  # NaN se: GAP_FLAG alone
            rows.append({"factor": factor, "level": level, "baseline": level == reference,
                         "n": int(row["n"]), "sample_accuracy": row["sample_accuracy"],
                         "test_accuracy": row["test_accuracy"], "gap": row["gap"],
                         "excess": excess, "excess_se": se, "flagged": bool(flagged)})
    return pd.DataFrame(rows, columns=GAP_COLUMNS)


def gap_std(trials: pd.DataFrame) -> float:
    """The seed std of the gaps, pooled over the design points with two trials or more; NaN
    without one (a sampled design's points are single trials)."""
    cells = trials.groupby("design_point", sort=False)["gap"]
    ss, df = (cells.var(ddof=1) * (cells.count() - 1)).sum(), (cells.count() - 1).sum()
    return float(np.sqrt(ss / df)) if df > 0 else np.nan
