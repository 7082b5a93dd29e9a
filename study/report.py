"""Write a study's report to `reports/<name>/`: `python -m study.report`.

report.md, report.html (self-contained: figures embedded, opens offline), trials.csv, curves.csv
and the figures (PNG and SVG), and the report attached to the Optuna study for optuna-dashboard
(study.reporting). Works on any study in any storage, including one still running or
interrupted: it uses the finished trials and says how many. The sweep writes it at its end;
rewrite it any time, or compare studies of one design at different budgets:

    python -m study.report name=ofat-quick storage=sqlite:///results/optuna.db
    python -m study.report compare=ofat-quick,ofat-full     # reports/compare/<a>_vs_<b>/

From Python, study.api does the same.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from study import api
from study.cli import run_app
from study.paths import REPORTS, check_outputs, check_writable
from study.reporting.sections import ranking_table

log = logging.getLogger("study.report")


def run_report(cfg: DictConfig) -> None:
    if cfg.compare:
        check_writable(REPORTS / "compare", "reports")
        out = api.compare(list(cfg.compare), cfg.storage, REPORTS, cfg.analysis.practical_effect)
        log.info("comparison written to %s", out / "report.html")
        return
    check_outputs(cfg, None, report=True)
    run = api.load(cfg.name, cfg.storage)  # reading: never makes a new storage
    report = api.write_report(run, REPORTS, Path(cfg.artifact_dir), cfg.analysis.practical_effect)
    log.info("report of %d finished trials (of %d) written to %s",
             (run.trials["state"] == "COMPLETE").sum(), len(run.trials),
             report.folder / "report.html")
    ranking = ranking_table(report.analysis.ranking, report.analysis.model.alpha)
    brief = ranking.iloc[:, [1, 0, 2, 3]]  # factor, rank, verdict, effect with its interval
    print(f"Ranking of study {run.name}:\n"
          + (brief.to_string(index=False) if not ranking.empty else "(no factor varied)"))


def main() -> None:
    run_app(run_report, "report", list_keys=("compare",))


if __name__ == "__main__":
    main()
