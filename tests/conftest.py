"""Shared fixtures: the real configs composed with small overrides, and the shared CIFAR-10."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from study.cli import compose_config
from study.design.spec import StudySpec, spec_for_run
from study.training.data import Images, load_cifar10
from study.training.engine import TrialResult, usable_cores
from study.training.precision import resolve_precision

REPO = Path(__file__).resolve().parent.parent
SHARED_CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def pytest_configure(config: pytest.Config) -> None:
    """Each pytest-xdist worker, and every command it starts, trains on its share of the cores:
    two workers each running torch on every core made the training tests 3-6x slower than
    alone on the 2-core CPU."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, usable_cores() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def compose(*overrides: str) -> DictConfig:
    """The real config as the apps compose it, with a smoke budget unless overridden."""
    return compose_config(["budget=smoke", *overrides])


def spec_of(cfg: DictConfig, fingerprint: str = "synthetic:test") -> StudySpec:
    """The spec a run of this config makes on the CPU (the data's fingerprint given); like the
    commands, it first resolves train.precision in cfg."""
    cfg.train.precision = resolve_precision(cfg.train.precision, torch.device("cpu"))
    return spec_for_run(cfg, cfg.sweep.design, fingerprint)


def untrained_steps(cfg: DictConfig, data, on_epoch=None):
    """In place of study.runs.workers.trial_steps where a test's subject is the bookkeeping
    around trials (specs, queues, workers): a complete trial after one step per epoch, its
    accuracy set by its seed and learning rate, nothing trained."""
    epochs = cfg.train.epochs
    accuracy = 0.5 + 0.01 * cfg.train.seed + cfg.train.lr
    for epoch in range(epochs):
        yield
        if on_epoch is not None:
            on_epoch(epoch, 1.0, 0.5, accuracy)
    return TrialResult(test_accuracy=accuracy, outcome="complete", train_loss=[1.0] * epochs,
                       train_accuracy=[0.5] * epochs, epoch_test_accuracy={epochs: accuracy},
                       epochs_run=epochs, device="cpu", engine="none",
                       precision=cfg.train.precision)


def cifar10_archive() -> Path:
    path = Path(os.environ.get("CIFAR10_PATH", SHARED_CIFAR10))
    if not path.exists():
        pytest.skip(f"CIFAR-10 not found at {path}; set CIFAR10_PATH")
    return path


@pytest.fixture(scope="session")
def cifar10(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """All of CIFAR-10, decoded once per test session into a fresh cache."""
    return load_cifar10(str(cifar10_archive()), tmp_path_factory.mktemp("cache"))
