"""The report never fails and never drops: a property test over random study tables (failures,
divergences, single seeds, single levels, all-equal accuracies) through the analysis and the
report's text, and whole reports of extreme studies through write_report."""

import optuna
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.reporting.report import Figures, Findings, report_markdown, write_report
from study.stats.frames import StudyData
from study.stats.ranking import VERDICTS, rank_trials
from study.stats.slices import studied
from study.stats.synthetic import OFAT, SHAPES, random_table, study_from_table


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(list(SHAPES)), seeds=st.integers(1, 3),
       noise=st.sampled_from([0.0, 0.005, 0.05]), effect=st.sampled_from([0.0, 0.03]),
       diverge=st.sampled_from([0.0, 0.2, 1.0]), fail=st.sampled_from([0.0, 0.3, 1.0]),
       seed=st.integers(0, 2 ** 16))
def test_any_study_table_gets_an_analysis_and_a_report_text(shape, seeds, noise, effect, diverge,
                                                            fail, seed) -> None:
    spec = SHAPES[shape]
    table = random_table(shape, seeds, noise, effect, diverge, fail, seed)
    result = rank_trials(table, spec)
    ranking = result.ranking
    assert list(ranking["factor"].sort_values()) == sorted(studied(spec))  # none dropped
    assert set(ranking["verdict"]) <= set(VERDICTS) and ranking["reason"].notna().all()
    ranked = ranking[ranking["effect"].notna()]
    assert (ranked["effect_ci_low"] <= ranked["effect"] + 1e-12).all()
    assert (ranked["effect"] <= ranked["effect_ci_high"] + 1e-12).all() or \
        ranked["effect_ci_high"].isna().all()
    bounded = ranking.dropna(subset=["rank_low"])
    assert ((bounded["rank_low"] <= bounded["rank"]) & (bounded["rank"] <= bounded["rank_high"])
            ).all()
    found = Findings(StudyData("t", spec, table, pd.DataFrame()), result, pd.DataFrame(), {},
                     pd.DataFrame(), None, None)
    markdown = report_markdown(found, Figures())
    assert "nan" not in markdown.replace("nano", "")  # undefined numbers read n/a
    failed = table[table["state"] == "FAIL"]
    assert all(f"| {n} | failed |" in markdown for n in failed["number"])  # all listed


@pytest.mark.slow
def test_reports_of_extreme_studies_are_written_in_full(tmp_path) -> None:
    everything_failed = random_table("ofat", 2, 0.005, 0.0, 0.0, 1.0, 0)
    mixed = random_table("ofat", 2, 0.005, 0.03, 0.2, 0.2, 1)
    one_seed_all_equal = random_table("ofat", 1, 0.0, 0.0, 0.0, 0.0, 2)
    for name, table in (("failed", everything_failed), ("mixed", mixed),
                        ("equal", one_seed_all_equal)):
        storage = optuna.storages.InMemoryStorage()
        written = write_report(study_from_table(table, OFAT, name, storage=storage), storage,
                               tmp_path)
        out, ranking = written.folder, written.analysis.ranking
        report = (out / "report.md").read_text()
        assert len(ranking) == len(OFAT.varied)
        assert "## Diverged, stalled and failed trials" in report
        assert report.count("| failed |") == (table["state"] == "FAIL").sum()
        assert (out / "report.html").stat().st_size > 0
    assert "no data" in (tmp_path / "failed" / "report.md").read_text()
