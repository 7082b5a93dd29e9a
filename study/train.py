"""Train one trial and record it: `python -m study.train` (the train app).

Every job, alone or in a Hydra multirun, is one trial of the study `name` (by default
train-<budget>, design `hydra`), so that `python -m study.report` analyses them together. The
study's spec records the setup of its first job; a job whose setup differs (other epochs, data,
optimizer, ...) is refused, while factor values and seeds may differ from job to job. The job's
folder gets its resolved config and metrics.

    python -m study.train model.activation=gelu train.lr=0.1 budget=quick
    python -m study.train -m model.activation=relu,tanh train.lr=0.01,0.1
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from study.cli import run_app
from study.design.config import check_batch_sizes
from study.design.cost import check_memory
from study.design.designs import HydraJobs
from study.design.factors import FACTORS
from study.design.spec import spec_for_run
from study.errors import Interrupted, StudyStopped, one_line
from study.outcomes import INTERRUPTED
from study.paths import check_outputs
from study.runs.queue import record_job
from study.runs.storage import mask_url, open_storage, open_study, sqlite_file
from study.runs.tensorboard_log import TrialLog
from study.training.data import load_images, to_device
from study.training.engine import device_name, pick_device, resolve_engine, train_trial
from study.training.precision import resolve_precision

log = logging.getLogger("study.train")
NOT_DESIGN_KEYS = {"train.seed", "name", "storage", "artifact_dir", "data.path", "data.cache_dir",
                   "train.compile"}  # overrides that do not change what a job trains


def job_design_point(overrides: list[str]) -> str:
    """A Hydra job's design point: its command-line overrides (factor keys by their short
    names), without the seed and the keys that say where things are."""
    short = {factor.key: name for name, factor in FACTORS.items()}
    kept = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key not in NOT_DESIGN_KEYS and not key.startswith("hydra"):
            kept.append(f"{short.get(key, key)}={value}")
    return ",".join(sorted(kept)) or "baseline"


def run_one(cfg: DictConfig) -> None:
    """Train the configured trial and record it as a trial of the study `name`."""
    device = pick_device()
    resolve_engine(cfg.train.compile, device)
    cfg.train.precision = resolve_precision(cfg.train.precision, device)  # the study records it
    check_outputs(cfg, sqlite_file(cfg.storage), report=False)
    images = load_images(cfg.data)
    check_batch_sizes(cfg, len(images.y_train), levels=False)
    job = spec_for_run(cfg, HydraJobs.name, images.fingerprint,
                       created={"device": device_name(device), "data_source": images.source})
    check_memory(job, cfg, device)
    storage = open_storage(cfg.storage)
    study, spec = open_study(cfg, storage, job)
    hydra_cfg = HydraConfig.get()
    point = job_design_point(list(hydra_cfg.overrides.task))
    job_dir = Path(hydra_cfg.runtime.output_dir)
    saved = OmegaConf.to_container(cfg, resolve=True) | {"storage": mask_url(cfg.storage)}
    (job_dir / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    data = to_device(images, cfg.data.preprocessing, device, cfg.data.zca_epsilon,
                     cfg.train.precision)
    log.info("%s on %s; training %d epochs [%s, seed %d]", images.source, device_name(device),
             cfg.train.epochs, point, cfg.train.seed)
    board = (TrialLog(cfg.logger.dir, cfg.name, f"job-{job_dir.parent.name}-{job_dir.name}")
             if cfg.logger.kind == "tensorboard" else None)

    def on_epoch(epoch: int, loss: float, accuracy: float, test_accuracy: float | None) -> None:
        tested = "" if test_accuracy is None else f", test accuracy {test_accuracy:.4f}"
        log.info("epoch %d: train loss %.4f, train accuracy %.4f%s", epoch + 1, loss, accuracy,
                 tested)
        if board:
            board.epoch(epoch, loss, accuracy, test_accuracy)

    try:
        result = train_trial(cfg, data, on_epoch=on_epoch)
    except Interrupted as stop:
        number = record_job(study, storage, spec, job, point, None, INTERRUPTED)
        raise Interrupted(stop.signum, f"trial {number} recorded as interrupted") from None
    except Exception as error:  # recorded with its reason, then one line
        reason = f"{type(error).__name__}: {error}"
        number = record_job(study, storage, spec, job, point, None, reason)
        log.exception("trial %d failed", number)  # the traceback goes to the job's log
        raise StudyStopped(f"trial {number} of study {cfg.name} failed and is recorded with "
                           f"its reason: {one_line(reason, 300)}") from None
    number = record_job(study, storage, spec, job, point, result)
    if board:
        board.finish(job.baseline, cfg.train.seed, result.test_accuracy, result.outcome)
    metrics = {"study": cfg.name, "trial": number, "design_point": point} | result.as_dict()
    (job_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("%s: test accuracy %.4f (BatchNorm statistics: %s; %.4f on training images) in "
             "%.1f s (%d parameters); trial %d of study %s", result.outcome, result.test_accuracy,
             result.bn_stats, result.train_sample_accuracy or float("nan"), result.wall_time_s,
             result.parameters, number, cfg.name)
    if result.reason:
        log.info("%s", result.reason)


def main() -> None:
    run_app(run_one, "train", app_defaults=("name=train-${budget}",))


if __name__ == "__main__":
    main()
