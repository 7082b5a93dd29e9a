"""The study's config schema (Hydra structured configs) and the value checks Hydra cannot express.

Hydra composes `conf/config.yaml` onto `StudyConfig`, so an unknown key or a wrong type fails at
composition; `validate` then checks every value against its allowed set or range. Both happen in
`study.cli` before any training, which prints the problem as one line.

Each studied factor is exactly one config key, described by its record in study.design.factors; each
design is one object in study.design.designs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from study.design.designs import SWEEP_DESIGNS
from study.design.factors import FACTORS, Check, applicable_factors, number, one_of, optional
from study.errors import ConfigError
from study.paths import name_problem
from study.training.evaluation import BN_STATS
from study.training.model import ARCHITECTURES
from study.training.precision import PRECISIONS

DATA_SOURCES = ("cifar10", "synthetic")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("onecycle", "cosine", "constant")
SAMPLERS = ("random", "tpe", "qmc")
BUDGETS = ("full", "quick", "smoke")
SYNTHETIC_MAX = 100_000  # images per split of data=synthetic (CIFAR-10 has 50,000 and 10,000)
ENGINES = ("auto", "none", "graph", "model")  # train.compile


@dataclass
class DataConfig:
    source: str = "cifar10"
    path: str | None = None  # CIFAR-10 folder or .tar.gz; None: $CIFAR10_PATH, else ./data
    cache_dir: str = ".cache/study"  # decoded uint8 arrays are cached here
    preprocessing: str = "standardize"
    zca_epsilon: float = 1e-2  # added to covariance eigenvalues; pixels scaled to [0, 1]
    train_subset: int | None = None  # training images used (None: all)
    test_subset: int | None = None  # test images used (None: all)
    synthetic_train: int = 2000  # images per split of data=synthetic
    synthetic_test: int = 1000


@dataclass
class ModelConfig:
    """Keys a network does not have are null in its config file
    (study.training.model.ARCHITECTURES)."""

    arch: str = "cnn"  # cnn | lenet5 | alexnet
    channels: int = 32  # kernels in the first conv layer; later layers scale with it
    activation: str = "relu"
    pooling: str = "max"
    dropout: float | None = 0.5  # before the classifier
    kernel_size: int | None = 3  # odd: same padding keeps the size
    stages: int | None = 3  # each stage halves the spatial size
    convs_per_stage: int | None = 2  # the factor conv_layers
    normalization: str | None = "batch"  # after every convolution: batch | none | group | layer
    fc_layers: int | None = 1  # hidden fully connected layers before the logits
    fc_width: int | None = 256


@dataclass
class TrainConfig:
    batch_size: int = 128
    lr: float = 0.05  # peak learning rate
    optimizer: str = "sgd"
    momentum: float = 0.9  # SGD momentum (Adam: beta1)
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup: float = 0.2  # fraction of all steps spent ramping up to lr (onecycle, cosine)
    epochs: int = 15
    augment: bool = True  # random crop (4 px padding) + horizontal flip
    seed: int = 0
    eval_batch_size: int = 1000
    test_every_epoch: bool = True  # test accuracy after every epoch (else after the last only)
    compile: str = "auto"  # auto | none | graph (the whole step in a CUDA graph) | model
    precision: str = "auto"  # auto (bf16 where the device has bf16 instructions) | fp32 | bf16
    bn_stats: str = "exact"  # exact: BatchNorm statistics recomputed before each test | running
    bn_images: int = 2048  # training images they are recomputed over (all, where fewer)


@dataclass
class SweepConfig:
    label: str = "${sweep.design}"  # the default study name's first part (conf/sweep/article.yaml)
    design: str = "ofat"
    seeds: int = 3  # replicates of every design point (ofat, grid)
    # ofat: replicates of the baseline point (at least `seeds`); the noise they measure lets
    # one seed per other point give verdicts. grid and optuna have no baseline point.
    baseline_seeds: int = 4
    levels: dict[str, list[Any]] = field(default_factory=dict)  # factor -> levels
    n_trials: int = 50  # optuna design: trials in all
    sampler: str = "tpe"  # optuna design
    workers: int | None = None  # trial-worker processes on this machine; None: chosen per device
    streams: int = 1  # trials each worker process trains at once, each on its own CUDA stream
    heartbeat_s: int = 10  # a running trial's heartbeat; 3 missed ones mark its worker dead
    max_failures: int = 10  # failed trials in one run before the sweep stops
    max_trials: int = 5000  # a design with more trials is refused before any is enqueued
    # planned: train the design; decided: then add seeds where factors are undecided and look
    # again, until every factor is decided, `looks` looks were taken (each tests at 5%/looks),
    # or the trials reach max_trials or the added training max_minutes
    until: str = "planned"
    looks: int = 4  # the planted study of docs/statistics.md: 4 decide it with far fewer trials
    max_minutes: float | None = None  # the looks add no seeds that would end the run later
    # (minutes from its start; set by the budget); None: no cap


@dataclass
class LoggerConfig:
    kind: str = "none"  # none | tensorboard
    dir: str = "results/tensorboard"  # TensorBoard runs: <dir>/<study>/trial-<number>


@dataclass
class BenchConfig:
    images: int = 250_000  # training images per throughput run (one trial; each worker of (c))
    tutorial_images: int = 25_000  # images the tutorial DataLoader loop trains on
    engines: list[str] = field(default_factory=lambda: ["none", "graph"])  # train.compile, (b)
    precisions: list[str] = field(default_factory=lambda: ["bf16"])  # train.precision, (b)
    workers: list[int] = field(default_factory=lambda: [1, 2, 4])  # K for (c)
    streams: list[int] = field(default_factory=lambda: [1])  # S for (c): trials per worker
    study: list[str] = field(default_factory=list)  # overrides that cut the study to the slice
    output: str = "results/bench.json"


@dataclass
class AnalysisConfig:
    """How the report judges effects; not part of a study's identity (rewrite the report with
    another value: python -m study.report analysis.practical_effect=0.02)."""

    practical_effect: float = 0.01  # accuracy: the smallest difference that matters (1 point)


@dataclass
class StudyConfig:
    name: str = "${sweep.label}-${budget}"  # Optuna study name
    storage: str = "sqlite:///results/optuna.db"  # any SQLAlchemy URL
    artifact_dir: str = "results/artifacts"  # report figures attached to the study
    budget: str = "full"  # set by the budget group
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    # python -m study.report compare=a,b[,...]: those studies side by side (the last: reference)
    compare: list[str] = field(default_factory=list)


def scale_epochs(epochs: int, factor: float) -> int:
    """`${scale_epochs:${train.epochs},2}`: a level of the epochs factor that follows the budget
    (conf/sweep/article.yaml), at least one epoch."""
    return max(1, round(epochs * factor))


def register_schema() -> None:
    ConfigStore.instance().store(name="study_schema", node=StudyConfig)
    OmegaConf.register_new_resolver("scale_epochs", scale_epochs, replace=True)


OTHER_CHECKS: dict[str, Check] = {
    "budget": one_of(BUDGETS),
    "data.source": one_of(DATA_SOURCES),
    "data.zca_epsilon": number(0, low_open=True),
    "data.train_subset": optional(number(10, integer=True)),
    "data.test_subset": optional(number(1, integer=True)),
    # at most SYNTHETIC_MAX each: the gratings are for checks, and are drawn in float32 at once
    "data.synthetic_train": number(10, SYNTHETIC_MAX, integer=True, high_open=False),
    "data.synthetic_test": number(1, SYNTHETIC_MAX, integer=True, high_open=False),
    "model.stages": number(1, 5, integer=True, high_open=False),
    "model.fc_width": number(1, integer=True),
    "train.optimizer": one_of(OPTIMIZERS),
    "train.momentum": number(0, 1),
    "train.weight_decay": number(0),
    "train.schedule": one_of(SCHEDULES),
    "train.warmup": number(0, 1),
    "train.eval_batch_size": number(1, integer=True),
    "train.compile": one_of(ENGINES),
    "train.precision": one_of(PRECISIONS),
    "train.bn_stats": one_of(BN_STATS),
    "train.bn_images": number(10, integer=True),
    "sweep.design": one_of(tuple(SWEEP_DESIGNS)),
    "sweep.seeds": number(1, integer=True),
    "sweep.baseline_seeds": number(1, integer=True),
    "sweep.n_trials": number(1, integer=True),
    "sweep.sampler": one_of(SAMPLERS),
    "sweep.workers": optional(number(1, integer=True)),
    "sweep.streams": number(1, integer=True),
    "sweep.heartbeat_s": number(1, integer=True),
    "sweep.max_failures": number(1, integer=True),
    "sweep.max_trials": number(1, integer=True),
    "sweep.until": one_of(("planned", "decided")),
    "sweep.looks": number(2, integer=True),
    "sweep.max_minutes": optional(number(0, low_open=True)),
    "analysis.practical_effect": number(0, 1, low_open=True),
    "logger.kind": one_of(("none", "tensorboard")),
    "bench.images": number(1, integer=True),
    "bench.tutorial_images": number(1, integer=True),
}


def check_batch_sizes(cfg: DictConfig, n_train: int, levels: bool = True) -> None:
    """ConfigError when a batch size (with `levels`, also a studied level) exceeds the training
    images: training would cut it to the data's size, so the study would rank a factor that
    did not vary."""
    sizes = [("train.batch_size", cfg.train.batch_size)]
    if levels:
        sizes += [("sweep.levels.batch_size level", size)
                  for size in cfg.sweep.levels.get("batch_size", [])]
    for key, size in sizes:
        if size > n_train:
            raise ConfigError(f"{key} {size} is more than the {n_train} training images, so it "
                              "would be cut to them; train on more images (data.train_subset) "
                              "or leave the size out")


def validate_model_keys(cfg: DictConfig) -> None:
    arch = cfg.model.arch
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch={arch!r} is not allowed: choose one of: "
                          f"{', '.join(ARCHITECTURES)}")
    keys = ARCHITECTURES[arch].keys
    for key, value in cfg.model.items():
        if key == "arch":
            continue
        if key in keys and value is None:
            raise ConfigError(f"model.{key}=None is not allowed: model={arch} needs a value")
        if key not in keys and value is not None:
            raise ConfigError(f"model.{key}={value!r} is not allowed: model={arch} has no "
                              f"{key}; its keys: {', '.join(keys)}")


def validate_compare(names: list[str]) -> None:
    """compare=a,b[,...]: two or more different study names whose joined folder name
    (a_vs_b) follows the name rule."""
    if not names:
        return
    for name in names:
        if problem := name_problem(str(name)):
            raise ConfigError(f"compare: {name!r} is not allowed: {problem}")
    if len(set(names)) < 2:
        raise ConfigError("compare: name two or more different studies, e.g. "
                          "compare=ofat-quick,ofat-full")
    if name_problem("_vs_".join(names)):
        raise ConfigError(f"compare: the report folder {'_vs_'.join(names)!r} would be longer "
                          "than 100 characters: compare fewer studies at a time")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) for the first value outside its allowed set or range."""
    validate_model_keys(cfg)
    checks = {f.key: f.check for f in FACTORS.values()} | OTHER_CHECKS
    for key, check in checks.items():
        value = OmegaConf.select(cfg, key)
        if value is None and key.startswith("model."):
            continue  # a key this network does not have (validate_model_keys)
        problem = check(value)
        if problem:
            raise ConfigError(f"{key}={value!r} is not allowed: {problem}")
    problem = name_problem(cfg.name)
    if problem:
        raise ConfigError(f"name={cfg.name!r} is not allowed: {problem}")
    validate_compare(list(cfg.compare))
    for name, levels in cfg.sweep.levels.items():
        key = f"sweep.levels.{name}"
        if name not in FACTORS:
            raise ConfigError(f"{key}: unknown factor; factors: {', '.join(FACTORS)}")
        if name not in applicable_factors(cfg):
            raise ConfigError(f"{key}: model={cfg.model.arch} has no {name}; leave the factor "
                              f"out with '~{key}'")
        if not isinstance(levels, ListConfig) or len(levels) == 0:
            raise ConfigError(f"{key}={levels!r} is not allowed: give a non-empty list of levels")
        for level in levels:
            problem = FACTORS[name].check(level)
            if problem:
                raise ConfigError(f"{key} level {level!r} is not allowed: {problem}")
    for engine in cfg.bench.engines:
        if engine not in ENGINES[1:]:
            raise ConfigError(f"bench.engines: {engine!r} is not allowed: choose from "
                              f"{', '.join(ENGINES[1:])}")
    for precision in cfg.bench.precisions:
        if precision not in PRECISIONS:
            raise ConfigError(f"bench.precisions: {precision!r} is not allowed: choose from "
                              f"{', '.join(PRECISIONS)}")
    for key in ("bench.workers", "bench.streams"):
        for count in OmegaConf.select(cfg, key):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"{key}: {count!r} is not allowed: must be integers >= 1")
    SWEEP_DESIGNS[cfg.sweep.design].check(cfg)
    if cfg.sweep.until == "decided" and not SWEEP_DESIGNS[cfg.sweep.design].fixed:
        raise ConfigError(f"sweep.until=decided is not allowed with sweep.design="
                          f"{cfg.sweep.design}: seeds are added to design points, which only "
                          "fixed designs have (ofat, grid)")
