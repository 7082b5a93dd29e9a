"""Run a design and record every trial in an Optuna study: `python -m study.sweep`.

Fixed designs (ofat, grid) put every (design point, seed) into the study's queue with
`enqueue_trial`; a worker takes the next waiting trial with Optuna's own atomic claim, trains it
and tells the result. Because the queue lives in the storage, a second process or machine started
with the same `name` and `storage` shares the work, and re-running the command enqueues only what
is missing. The optuna design asks the configured sampler until `sweep.n_trials` trials exist.

Each trial records: params = the seven studied factors; user attributes = seed, design_point,
outcome (complete | diverged | failed), per-epoch train_loss/train_accuracy, wall_time_s, device,
and for failures the reason. The sweep ends by writing the report and printing the
optuna-dashboard command.

    python -m study.sweep                                  # the textbook's OFAT study
    python -m study.sweep sweep=grid budget=full storage=postgresql://user@host/db
"""

from __future__ import annotations

import logging
import platform
from collections import Counter
from pathlib import Path

import optuna
import sqlalchemy
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from study.config import UserError
from study.data import DeviceData, Images, load_images, to_device
from study.design import apply_params, distributions, fixed_points, replicate_seeds
from study.train import device_name, pick_device, train_trial

log = logging.getLogger("study.sweep")
CLAIMED = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


def mask_url(url: str) -> str:
    """The storage URL with any password replaced by ***, for logs and reports."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<invalid storage URL>"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"storage={mask_url(url)} is not a SQLAlchemy URL (e.g. "
                        "sqlite:///results/optuna.db, postgresql://user@host/db)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise UserError(f"cannot open storage {mask_url(url)}: {reason}") from None


def make_sampler(cfg: DictConfig) -> optuna.samplers.BaseSampler:
    seed = cfg.train.seed
    if cfg.sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sweep.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def open_study(cfg: DictConfig, storage: optuna.storages.BaseStorage) -> optuna.Study:
    study = optuna.create_study(study_name=cfg.name, storage=storage, direction="maximize",
                                sampler=make_sampler(cfg), load_if_exists=True)
    study.set_user_attr("design", cfg.sweep.design)
    study.set_user_attr("budget", cfg.budget)
    study.set_user_attr("config", OmegaConf.to_container(cfg, resolve=True)
                        | {"storage": mask_url(cfg.storage)})
    return study


def enqueue_missing(study: optuna.Study, cfg: DictConfig) -> int:
    """Enqueue every (design point, seed) that is not already done, running or waiting."""
    claimed = Counter((t.user_attrs.get("design_point"), t.user_attrs.get("seed"))
                      for t in study.get_trials(deepcopy=False, states=CLAIMED))
    added = 0
    for point in fixed_points(cfg):
        for seed in replicate_seeds(cfg):
            if claimed[(point.id, seed)] == 0:
                study.enqueue_trial(point.params, user_attrs={"design_point": point.id,
                                                              "seed": seed})
                added += 1
    return added


def claim_waiting_trial(study: optuna.Study, storage: optuna.storages.BaseStorage
                        ) -> optuna.Trial | None:
    """Take the next enqueued trial, as Study.ask does, but never create a new one: a fixed
    design must not grow sampler-made trials when its queue runs dry."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def next_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, cfg: DictConfig,
               space: dict[str, BaseDistribution]) -> optuna.Trial | None:
    if cfg.sweep.design != "optuna":
        trial = claim_waiting_trial(study, storage)
    elif len(study.get_trials(deepcopy=False, states=CLAIMED)) < cfg.sweep.n_trials:
        trial = study.ask()
        trial.set_user_attr("design_point", f"sample {trial.number}")
        trial.set_user_attr("seed", cfg.train.seed + trial.number)
    else:
        return None
    if trial is not None:
        for name, distribution in space.items():
            suggest(trial, name, distribution)
    return trial


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> None:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        trial.suggest_categorical(name, distribution.choices)
    elif isinstance(distribution, optuna.distributions.IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    else:
        trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


def run_worker(cfg: DictConfig, study: optuna.Study, storage: optuna.storages.BaseStorage,
               images: Images, device: torch.device) -> Counter:
    """Train trials until the design is exhausted; return how many ended in each outcome."""
    space = distributions(cfg)
    prepared: dict[str, DeviceData] = {}  # preprocessing -> data on the device, made once
    outcomes: Counter = Counter()
    while (trial := next_trial(study, storage, cfg, space)) is not None:
        seed = trial.user_attrs["seed"]
        trial_cfg = apply_params(cfg, trial.params, seed)
        label = f"trial {trial.number} [{trial.user_attrs['design_point']}, seed {seed}]"
        try:
            preprocessing = trial_cfg.data.preprocessing
            if preprocessing not in prepared:
                prepared[preprocessing] = to_device(images, preprocessing, device,
                                                    cfg.data.zca_epsilon)
            result = train_trial(trial_cfg, prepared[preprocessing])
        except KeyboardInterrupt:
            record_failure(study, trial, "interrupted")
            raise
        except Exception as error:  # a failing trial is recorded and the sweep goes on
            log.exception("%s failed", label)
            record_failure(study, trial, f"{type(error).__name__}: {error}")
            outcomes["failed"] += 1
            continue
        for key, value in result.as_dict().items():
            if key != "test_accuracy":
                trial.set_user_attr(key, value)
        study.tell(trial, result.test_accuracy)
        outcomes[result.outcome] += 1
        log.info("%s: %s, test accuracy %.4f (%.1f s)", label, result.outcome,
                 result.test_accuracy, result.wall_time_s)
    return outcomes


def record_failure(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("outcome", "failed")
    trial.set_user_attr("reason", reason)
    study.tell(trial, state=TrialState.FAIL)


def run_sweep(cfg: DictConfig) -> None:
    from study.report import write_report

    device = pick_device()
    images = load_images(cfg.data)  # before the storage, so that bad data writes nothing
    storage = open_storage(cfg.storage)
    study = open_study(cfg, storage)
    study.set_user_attr("data_source", images.source)
    study.set_user_attr("environment", {
        "device": device_name(device), "torch": torch.__version__, "optuna": optuna.__version__,
        "python": platform.python_version()})
    if cfg.sweep.design != "optuna":
        added = enqueue_missing(study, cfg)
        log.info("study %s: %d trials enqueued (%d design points x %d seeds in the design)",
                 cfg.name, added, len(fixed_points(cfg)), cfg.sweep.seeds)
    log.info("%s on %s, budget %s: %d epochs per trial", images.source, device_name(device),
             cfg.budget, cfg.train.epochs)
    outcomes = run_worker(cfg, study, storage, images, device)
    log.info("this worker finished %s", dict(outcomes) or "no trials (nothing left to run)")
    report_dir = write_report(study, Path("reports"), Path(cfg.artifact_dir))
    log.info("report: %s (and report.md)", report_dir / "report.html")
    log.info("see the study: optuna-dashboard --host 127.0.0.1 --artifact-dir %s %s",
             cfg.artifact_dir, mask_url(cfg.storage))


def main() -> None:
    from study.cli import run_app

    run_app(run_sweep, "sweep")


if __name__ == "__main__":
    main()
