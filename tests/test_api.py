"""The Python API (study.api), run exactly as the docs show it (docs/tools.md), on a study stored
as the sweep stores it."""

import re
from pathlib import Path

import pandas as pd
import pytest

from study import api
from study.errors import UserError
from study.stats.synthetic import OFAT, ofat_spec, ofat_table, study_from_table
from tests.conftest import REPO


def _docs_example() -> str:
    """The docs' Python example: the python block of docs/tools.md's 'From Python' section."""
    section = (REPO / "docs" / "tools.md").read_text().split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]


@pytest.mark.slow
def test_the_docs_three_lines_rank_a_study_and_write_its_report(tmp_path, monkeypatch
                                                                    ) -> None:
    monkeypatch.chdir(tmp_path)
    Path("results").mkdir()
    levels = {"lr": [0.01, 0.1], "activation": ["tanh"]}  # two factors: a report drawn quickly
    trials = ofat_table({"lr": -0.05}, noise=0.003, seeds=3, levels=levels)
    spec = ofat_spec(levels)
    study_from_table(trials, spec, "ofat-quick", storage="sqlite:///results/optuna.db")
    names: dict = {}
    exec(_docs_example(), names)  # the docs' own lines, as a user runs them
    run, analysis = names["run"], names["analysis"]
    assert isinstance(run.trials, pd.DataFrame) and len(run.trials) == len(trials)
    assert run.spec.varied == ["lr", "activation"]
    top = analysis.ranking.iloc[0]
    assert (top["factor"], top["verdict"]) == ("lr", "influential")
    assert analysis.noise.baseline_converged == 3 and analysis.noise.pooled_df > 0
    report = (tmp_path / "reports" / "ofat-quick" / "report.md").read_text()
    assert "| 1 (1-1) | lr | influential |" in report  # the same ranking, written


@pytest.mark.slow
def test_loading_names_what_is_there_and_creates_nothing(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    study_from_table(ofat_table({}, noise=0.01, seeds=2), OFAT, "one", storage=url)
    with pytest.raises(UserError, match=r"^no study named 'two' in sqlite:///.*s\.db; studies "
                                        r"there: one$"):
        api.load("two", url)
    with pytest.raises(UserError, match="no storage at"):
        api.load("one", f"sqlite:///{tmp_path}/missing.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]
