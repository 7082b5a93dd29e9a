"""The project's Python API: what `python -m study.report` does, from Python (a notebook, a
script, pandas):

    from study import api
    run = api.load("ofat-quick", "sqlite:///results/optuna.db")   # run.trials: a DataFrame
    analysis = api.rank(run)            # analysis.ranking: one row per factor, in rank order
    api.write_report(run)               # reports/ofat-quick/

`load` reads a study of any storage (a URL, or an Optuna storage object) as plain data: its
spec, one row per trial and one per trial and epoch. `rank` fits the study's model and judges
its factors (study.stats: an `Analysis` of DataFrames and typed records: `analysis.noise`,
`analysis.model`). `write_report` writes the report the sweep writes; `compare` writes the
comparison of studies of one design at different budgets. The commands call these too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd

from study.design.spec import StudySpec
from study.errors import UserError
from study.paths import REPORTS
from study.reporting.compare import write_comparison
from study.reporting.report import Report
from study.reporting.report import write_report as _write_report
from study.runs.storage import mask_url, open_storage
from study.stats.frames import StudyData, read_study
from study.stats.ranking import PRACTICAL_EFFECT, Analysis, rank_trials

DEFAULT_STORAGE = "sqlite:///results/optuna.db"
Storage = str | optuna.storages.BaseStorage  # a SQLAlchemy URL, or an open storage


@dataclass
class LoadedStudy:
    """A study of a storage, read as plain data (`data`) beside the Optuna objects."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    data: StudyData

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def spec(self) -> StudySpec:
        return self.data.spec

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial, every state: its factors, seed, outcome, test accuracy, ..."""
        return self.data.trials

    @property
    def curves(self) -> pd.DataFrame:
        """One row per finished trial and epoch, with the test accuracy after that epoch."""
        return self.data.curves


def _open(storage: Storage) -> tuple[optuna.storages.BaseStorage, str]:
    """The storage, and how to name it in a message (its password masked)."""
    if isinstance(storage, str):
        return open_storage(storage, create=False), mask_url(storage)  # never make a new one
    url = getattr(storage, "url", None)
    return storage, mask_url(str(url)) if url is not None else type(storage).__name__


def load(name: str, storage: Storage = DEFAULT_STORAGE) -> LoadedStudy:
    """The study `name` of the storage; UserError naming the studies there when it is not."""
    opened, where = _open(storage)
    names = [s.study_name for s in opened.get_all_studies()]
    if name not in names:
        raise UserError(f"no study named {name!r} in {where}; studies there: "
                        f"{', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=name, storage=opened)
    return LoadedStudy(study, opened, read_study(study))


def rank(study: LoadedStudy | StudyData, practical_effect: float = PRACTICAL_EFFECT
         ) -> Analysis:
    """The study's factors ranked and judged against its seed noise (study.stats.ranking)."""
    data = study.data if isinstance(study, LoadedStudy) else study
    return rank_trials(data.trials, data.spec, practical_effect)


def write_report(study: LoadedStudy, reports_root: Path = REPORTS,
                 artifact_dir: Path | None = None,
                 practical_effect: float = PRACTICAL_EFFECT) -> Report:
    """`reports_root/<name>/`: report.md, report.html, the CSVs and figures, from the trials as
    `load` read them; with artifact_dir, also the report on the study's page in
    optuna-dashboard."""
    return _write_report(study.study, study.storage, Path(reports_root),
                         None if artifact_dir is None else Path(artifact_dir), practical_effect,
                         study.data)


def compare(names: list[str], storage: Storage = DEFAULT_STORAGE, reports_root: Path = REPORTS,
            practical_effect: float = PRACTICAL_EFFECT) -> Path:
    """`reports_root/compare/<a>_vs_<b>/`: the studies `names` of one design side by side (the
    last is the reference)."""
    opened, where = _open(storage)
    return write_comparison(opened, list(names), where, Path(reports_root), practical_effect)
