"""The generalisation-gap check (study.stats.gaps): a level tested far below its own accuracy on
training images, while the baseline is not, is flagged, in the data and in the report; a level
that is simply worse, or a study that recorded no training-sample accuracy, is not."""

import re

import numpy as np
import pandas as pd
import pytest

from study.reporting.report import Figures, Findings, report_markdown
from study.stats.frames import ACCURACY, SAMPLE_ACCURACY, StudyData
from study.stats.gaps import GAP_FLAG, GAP_Z, gap_std, generalisation_gaps
from study.stats.ranking import rank_trials
from study.stats.synthetic import OFAT, ofat_table

STALE = "batch_size=256"  # the planted artefact: tested with stale BatchNorm statistics


def measured(shifts: dict[str, float], artefact: float = 0.0, seeds: int = 3,
             seed: int = 0, baseline_seeds: int = 0) -> pd.DataFrame:
    """A study table whose trials also recorded a training-sample accuracy: each network's test
    accuracy plus a gap of 2 points (and 1 point of seed noise); the STALE level tests
    `artefact` below what its network learned."""
    rng = np.random.default_rng(seed)
    table = ofat_table(shifts, noise=0.01, seeds=seeds, rng=rng, baseline_seeds=baseline_seeds)
    table[SAMPLE_ACCURACY] = table[ACCURACY] + 0.02 + rng.normal(0, 0.01, len(table))
    table.loc[table["design_point"] == STALE, ACCURACY] -= artefact
    return table


def _gaps(table: pd.DataFrame) -> pd.DataFrame:
    return generalisation_gaps(table, OFAT).set_index(["factor", "level"])


def test_a_level_tested_with_stale_statistics_is_flagged_and_no_other() -> None:
    gaps = _gaps(measured({}, artefact=0.2))
    assert gaps["flagged"].sum() == 1 and gaps.loc[("batch_size", 256), "flagged"]
    stale = gaps.loc[("batch_size", 256)]
    assert stale["excess"] == pytest.approx(0.2, abs=0.03) and stale["n"] == 3
    assert gaps.loc[("batch_size", 128), "baseline"] and np.isnan(
        gaps.loc[("batch_size", 128), "excess"])
    # each level's mean gap and sample accuracy, and the excess's standard error: the gaps' seed
    # std pooled over the design points, over the level's and the baseline's seeds
    table = measured({}, artefact=0.2)
    gap = table[SAMPLE_ACCURACY] - table[ACCURACY]
    at_stale = table["design_point"] == STALE
    assert stale["gap"] == pytest.approx(gap[at_stale].mean())
    assert stale["sample_accuracy"] == pytest.approx(table.loc[at_stale, SAMPLE_ACCURACY].mean())
    cells = gap.groupby(table["design_point"])
    pooled = np.sqrt(((cells.count() - 1) * cells.var()).sum() / (cells.count() - 1).sum())
    at_baseline = (table["design_point"] == "baseline").sum()
    assert stale["excess_se"] == pytest.approx(pooled * np.sqrt(1 / 3 + 1 / at_baseline))
    assert np.isnan(gaps.loc[("batch_size", 128), "excess_se"])  # the reference: no difference


def test_a_factor_without_a_measured_trial_leaves_the_others_gaps() -> None:
    # neither the baseline nor any channels level recorded a training-sample accuracy: channels
    # has no row, the others have theirs, with no reference to compare with
    table = measured({}, artefact=0.2)
    unmeasured = (table["design_point"] == "baseline") | table["design_point"].str.startswith(
        "channels=")
    table.loc[unmeasured, SAMPLE_ACCURACY] = np.nan
    gaps = generalisation_gaps(table, OFAT)
    assert "channels" not in set(gaps["factor"])
    assert set(gaps["factor"]) == set(OFAT.varied) - {"channels"}
    assert gaps["excess"].isna().all() and not gaps["flagged"].any()


def test_a_level_that_is_simply_worse_is_not_flagged() -> None:
    gaps = _gaps(measured({"lr": -0.2, "activation": 0.05}))
    assert not gaps["flagged"].any()
    assert gaps.loc[("lr", 0.1), "test_accuracy"] < gaps.loc[("lr", 0.05), "test_accuracy"] - 0.15


def test_the_flag_needs_both_the_threshold_and_the_noise() -> None:
    below = _gaps(measured({}, artefact=GAP_FLAG - 0.02, seeds=6))  # beyond noise, too small
    stale = below.loc[("batch_size", 256)]
    assert stale["excess"] > GAP_Z * stale["excess_se"] and not below["flagged"].any()
    # one seed per point: beyond the threshold, but within GAP_Z standard errors of noisy gaps
    noisy = measured({}, seeds=1, baseline_seeds=6)
    noisy[SAMPLE_ACCURACY] += np.random.default_rng(1).normal(0, 0.05, len(noisy))
    gaps = noisy[SAMPLE_ACCURACY] - noisy[ACCURACY]
    base_gap = gaps[noisy["design_point"] == "baseline"].mean()
    stale = noisy["design_point"] == STALE
    noisy.loc[stale, ACCURACY] = noisy.loc[stale, SAMPLE_ACCURACY] - base_gap - 0.07
    row = _gaps(noisy).loc[("batch_size", 256)]
    assert row["excess"] == pytest.approx(0.07) and row["excess"] <= GAP_Z * row["excess_se"]
    assert not row["flagged"]
    assert _gaps(noisy.assign(**{SAMPLE_ACCURACY: noisy[ACCURACY] + 0.02 + 0.07 * stale})).loc[
        ("batch_size", 256), "flagged"]  # the same excess from quiet gaps is flagged


def test_a_study_without_training_sample_accuracies_has_no_gaps() -> None:
    assert generalisation_gaps(ofat_table({}, noise=0.01, seeds=2), OFAT).empty


def _report(table: pd.DataFrame) -> str:
    found = Findings(StudyData("t", OFAT, table, pd.DataFrame()), rank_trials(table, OFAT),
                     pd.DataFrame(), {}, pd.DataFrame(), None, None,
                     generalisation_gaps(table, OFAT))
    return report_markdown(found, Figures())


@pytest.mark.slow
def test_the_report_warns_at_the_top_and_names_the_flagged_level() -> None:
    report = _report(measured({}, artefact=0.2))
    warning = report.index("> **Check the measurement**: batch_size=256")
    assert warning < report.index("## The answer")
    check = report.split("## Measurement check")[1].split("\n## ")[0]
    assert "**Flagged: batch_size=256.**" in check
    assert re.search(r"\| 256 \| 3 \|[^\n]*\| flagged \|\n", check)  # its row, marked
    assert "Check the measurement" not in _report(measured({}))
    assert "No level is flagged." in _report(measured({}))
    assert "n/a: no trial recorded its accuracy on training images" in _report(
        ofat_table({}, noise=0.01, seeds=2))


def test_the_gaps_seed_std_needs_one_point_with_two_trials() -> None:
    one_pair = pd.DataFrame({"design_point": ["baseline", "baseline", "lr=0.1"],
                             "gap": [0.02, 0.05, 0.3]})
    assert gap_std(one_pair) == pytest.approx(0.03 / np.sqrt(2))  # one degree of freedom
    assert np.isnan(gap_std(one_pair.iloc[1:]))  # single trials: no seed std
