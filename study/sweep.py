"""Run a design and record every trial in an Optuna study: `python -m study.sweep`.

The run's config makes a study spec (study.design.spec), which creates, continues or grows the
study of that name, or is refused; the design's trials wait in the study's queue
(study.runs.queue) and `sweep.workers` worker processes (study.runs.workers) train them. The
sweep ends by writing the report (study.api) and printing the optuna-dashboard command. What a
study is, what a rerun does and what each trial records: docs/factors-and-designs.md.

    python -m study.sweep                                  # the textbook's OFAT study
    python -m study.sweep sweep=grid budget=full storage=postgresql://user@host/db
"""

from __future__ import annotations

import logging
import platform
from collections import Counter
from datetime import datetime
from pathlib import Path

import optuna
import torch
from omegaconf import DictConfig
from optuna.trial import TrialState

from study.cli import run_app
from study.design.config import check_batch_sizes
from study.design.cost import check_memory, point_costs
from study.design.spec import SPEC_ATTR, StudySpec, spec_for_run
from study.errors import Interrupted, StudyStopped, one_line
from study.paths import check_outputs
from study.runs.queue import (
    check_size,
    fail_untrainable,
    failures_since,
    missing_trials,
    seconds_per_baseline,
)
from study.runs.storage import mask_url, open_storage, open_study, sqlite_file, study_lock
from study.runs.workers import auto_workers, check_workers, interrupted_status, train_design
from study.training.data import Images, load_images
from study.training.engine import device_name, pick_device, resolve_engine
from study.training.precision import resolve_precision

log = logging.getLogger("study.sweep")


def run_sweep(cfg: DictConfig) -> None:
    # the report's plotting and statistics libraries take seconds to import: here, in the task,
    # so that a bad command line fails before them
    from study import api

    device = pick_device()
    resolve_engine(cfg.train.compile, device)  # a mode this device lacks is an error now
    cfg.train.precision = resolve_precision(cfg.train.precision, device)  # the study records it
    check_outputs(cfg, sqlite_file(cfg.storage), report=True)  # now, not after the training
    images = load_images(cfg.data)  # before the storage, so that bad data writes nothing
    check_batch_sizes(cfg, len(images.y_train))
    run_spec = spec_for_run(cfg, cfg.sweep.design, images.fingerprint, created={
        "device": device_name(device), "data_source": images.source, "torch": torch.__version__,
        "optuna": optuna.__version__, "python": platform.python_version()})
    check_size(run_spec, cfg.sweep.max_trials)  # before the storage: a refusal writes nothing
    check_memory(run_spec, cfg, device)
    workers = auto_workers(cfg, device)
    check_workers(workers, len(images.y_train) + len(images.y_test))
    storage = open_storage(cfg.storage, cfg.sweep.heartbeat_s)
    study, spec = open_study(cfg, storage, run_spec)
    log.info("%s on %s, budget %s, %s: %d epochs per trial, %d worker process%s x %d trial%s "
             "at once; study %s, identity %s", images.source, device_name(device), cfg.budget,
             cfg.train.precision, cfg.train.epochs, workers, "" if workers == 1 else "es",
             cfg.sweep.streams, "" if cfg.sweep.streams == 1 else "s", cfg.name,
             spec.identity_hash())
    with study_lock(storage, cfg.name):  # trials of workers killed in an earlier run
        optuna.storages.fail_stale_trials(study)
        repaired = fail_untrainable(study, storage)
    if repaired:
        log.warning("%d queued trials could not be trained and are recorded as failed (%s); "
                    "their design points are queued again", len(repaired), repaired[0])
    start = datetime.now()
    try:
        failed = train_design(cfg, spec, study, storage, images, device, workers, start)
        if spec.looks:
            failed = replicate_until_decided(cfg, study, storage, images, device, workers, start,
                                             failed)
    except Interrupted as stop:
        raise Interrupted(stop.signum, interrupted_status(study, start)) from None
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    log.info("study %s now holds %s", cfg.name, dict(states))
    report_dir = api.write_report(api.load(cfg.name, storage), artifact_dir=Path(cfg.artifact_dir),
                                  practical_effect=cfg.analysis.practical_effect).folder
    log.info("report: %s (and report.md)", report_dir / "report.html")
    log.info("see the study: optuna-dashboard --host 127.0.0.1 --artifact-dir %s %s",
             cfg.artifact_dir, mask_url(cfg.storage))
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(failed) >= cfg.sweep.max_failures or (failed and not finished):
        reasons = Counter(one_line(t.user_attrs.get("reason", "no heartbeat")) for t in failed)
        what = (f"stopped after {len(failed)} failed trial{'' if len(failed) == 1 else 's'} "
                f"(sweep.max_failures={cfg.sweep.max_failures})"
                if len(failed) >= cfg.sweep.max_failures else f"all {len(failed)} trials failed")
        raise StudyStopped(f"{what}; most common reason: {reasons.most_common(1)[0][0]}; "
                           f"{report_dir / 'report.md'} lists every failed trial with its "
                           "reason")


def replicate_until_decided(cfg: DictConfig, study: optuna.Study,
                            storage: optuna.storages.RDBStorage, images: Images,
                            device: torch.device, workers: int, start: datetime,
                            failed: list[optuna.trial.FrozenTrial]
                            ) -> list[optuna.trial.FrozenTrial]:
    """sweep.until=decided: look at the verdicts, train the seeds the look adds, and again,
    until a look stops (study.stats.replication) or sweep.max_failures trials failed; returns
    the failures since `start`. A look is taken under the study lock once the stored spec has
    no trial left to train, so machines sharing the study take each look once."""
    # imported here, as api in run_sweep: a bad command line fails before their seconds
    from study.stats.frames import read_study
    from study.stats.ranking import rank_trials
    from study.stats.replication import describe, plan_look, with_added_seeds

    while len(failed) < cfg.sweep.max_failures:
        with study_lock(storage, cfg.name):
            data = read_study(study)
            spec: StudySpec = data.spec
            trials = study.get_trials(deepcopy=False)
            look = None
            if not missing_trials(trials, spec):
                elapsed = (datetime.now() - start).total_seconds()
                look = plan_look(
                    rank_trials(data.trials, spec, cfg.analysis.practical_effect), spec,
                    sum(t.state == TrialState.COMPLETE for t in trials),
                    cfg.sweep.max_trials - spec.total_trials(),
                    None if cfg.sweep.max_minutes is None else cfg.sweep.max_minutes * 60 - elapsed,
                    seconds_per_baseline(trials, point_costs(spec))[0])
                spec = with_added_seeds(spec, look)
                study.set_user_attr(SPEC_ATTR, spec.to_dict())
                log.info("study %s: %s", cfg.name, describe(look))
        if look is not None and look.stop:
            return failed
        failed = train_design(cfg, spec, study, storage, images, device, workers, start)
    return failures_since(study, start)


def main() -> None:
    run_app(run_sweep, "sweep")


if __name__ == "__main__":
    main()
