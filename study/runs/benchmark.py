"""The measurements of `python -m study.bench` (study/bench.py runs them and writes the table):
(a) the tutorial loop, (b) the engine one trial at a time per `train.compile` mode and
`train.precision`, (c) K worker processes each training S trials at once, (d) the wall time of a
study slice run as `python -m study.sweep`, (e) how far apart same-seed trials end, (f) the cost
of testing after every epoch, and the roofline: the device's own matmul rate in fp32 and bf16,
against which each row's arithmetic rate is read. Each returns plain data (`Throughput`, dicts).
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from study.design.spec import study_spec
from study.training.data import DeviceData, Images, load_images, take_subsets, to_device
from study.training.engine import train_trial, trial_steps, worker_device
from study.training.model import build_model
from study.training.streams import TrialStreams

log = logging.getLogger("study.runs.benchmark")
TUTORIAL_BATCH = 128
TUTORIAL_LOADER_WORKERS = 2
SLICE_STORAGE = Path("results/bench/study.db")  # the timed slice's own study, remade each run
LAST_ONLY = ", tested after the last epoch only"  # (f)
MATMUL_SIZE = 2048  # the roofline's square matmul, at most
SMALLEST_MATMUL = 256  # and its first size


@dataclass
class Throughput:
    label: str
    images_per_s: float
    images: int
    seconds: float
    test_accuracy: list[float] = field(default_factory=list)  # per trial; empty for (a)
    seeds: list[int] = field(default_factory=list)  # of those trials
    engine: str = ""  # train.compile as the trials resolved it
    precision: str = "fp32"  # train.precision as the trials resolved it
    error: str | None = None  # why the measurement failed, if it did


class TutorialCIFAR10(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image through CPU transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 transform: transforms.Compose) -> None:
        self.pixels = images.permute(0, 2, 3, 1).numpy()  # HWC uint8, as CIFAR10.data
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.pixels[index])), self.labels[index]


def tutorial_throughput(cfg: DictConfig, images: Images, device: torch.device,
                        n_images: int) -> Throughput:
    """(a): the PyTorch CIFAR-10 tutorial's loop, timed after its first batch (worker start-up)."""
    pixels = images.x_train.float().div(255)
    normalize = transforms.Normalize(pixels.mean(dim=(0, 2, 3)).tolist(),
                                     pixels.std(dim=(0, 2, 3)).tolist())
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4),
                                    transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                    normalize])
    loader = DataLoader(TutorialCIFAR10(images.x_train, images.y_train, transform),
                        batch_size=TUTORIAL_BATCH, shuffle=True, drop_last=True,
                        num_workers=TUTORIAL_LOADER_WORKERS)
    model = build_model(cfg.model).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum,
                                nesterov=True, weight_decay=cfg.train.weight_decay)
    seen, running_loss, start = 0, 0.0, 0.0
    while seen < n_images:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if start == 0.0:
                start = time.perf_counter()  # after the first batch: workers are up
                continue
            seen += len(y)
            if seen >= n_images:
                break
    seconds = time.perf_counter() - start
    return Throughput("(a) tutorial loop", seen / seconds, seen, seconds, precision="fp32")


def throughput_config(cfg: DictConfig, engine: str, precision: str, n_train: int, seed: int = 0,
                      epochs: int | None = None) -> DictConfig:
    """The baseline trial sized to bench.images: one pass over n_train images per epoch."""
    trial_cfg = cfg.copy()
    trial_cfg.train.compile, trial_cfg.train.precision = engine, precision
    trial_cfg.train.epochs = epochs or max(1, cfg.bench.images // n_train)
    trial_cfg.train.seed = seed
    return trial_cfg


def trained_images(cfg: DictConfig, n_train: int) -> int:
    batch = min(cfg.train.batch_size, n_train)  # as train_trial: the partial batch is dropped
    return cfg.train.epochs * (n_train // batch) * batch


def warm_up(cfg: DictConfig, data: DeviceData, engine: str, precision: str) -> None:
    """On CUDA, an untimed one-epoch trial on a slice of the data, which pays the process's
    one-off CUDA and cuDNN start-up that a study pays once per worker, not per trial."""
    if data.x_train.device.type == "cuda":
        n = min(len(data.y_train), 10 * cfg.train.batch_size)
        head = DeviceData(data.x_train[:n], data.y_train[:n], data.x_test, data.y_test)
        train_trial(throughput_config(cfg, engine, precision, n, epochs=1), head)


def engine_throughput(cfg: DictConfig, images: Images, device: torch.device, engine: str,
                      precision: str, test_every_epoch: bool = True) -> Throughput:
    """(b): one trial of the baseline with train.compile=engine and train.precision=precision,
    after `warm_up`; tested after every epoch as in a study, or (for (f)) after the last only."""
    data = to_device(images, cfg.data.preprocessing, device, cfg.data.zca_epsilon, precision)
    n_train = len(images.y_train)
    warm_up(cfg, data, engine, precision)
    trial_cfg = throughput_config(cfg, engine, precision, n_train)
    trial_cfg.train.test_every_epoch = test_every_epoch
    result = train_trial(trial_cfg, data)
    n = trained_images(trial_cfg, n_train)
    label = (f"(b) engine, compile={result.engine}, {result.precision}"
             + ("" if test_every_epoch else LAST_ONLY))
    return Throughput(label, n / result.wall_time_s, n, result.wall_time_s,
                      [result.test_accuracy], [0], result.engine, result.precision)


def _concurrent_worker(config: dict, index: int, count: int, streams: int, engine: str,
                       precision: str, go: multiprocessing.synchronize.Event,
                       messages: multiprocessing.Queue) -> None:
    """One of K processes in (c): set up, say ready, wait for the start, train S trials at
    once."""
    try:
        cfg = OmegaConf.create(config)
        device = worker_device(index, count)
        images = bench_images(cfg)
        data = to_device(images, cfg.data.preprocessing, device, cfg.data.zca_epsilon,
                         precision)
        n_train = len(images.y_train)
        warm_up(cfg, data, engine, precision)
        messages.put(("ready", index))
        go.wait()
        configs = {seed: throughput_config(cfg, engine, precision, n_train, seed)
                   for seed in range(index * streams, (index + 1) * streams)}
        trials = TrialStreams(streams, device)
        for seed, trial_cfg in configs.items():
            trials.start(seed, trial_steps(trial_cfg, data))
        results = []
        while trials.running:
            results += trials.turn()
        trained = sum(trained_images(trial_cfg, n_train) for trial_cfg in configs.values())
        messages.put(("done", (trained, time.monotonic(),
                               [(seed, r.test_accuracy, r.engine) for seed, r in results])))
    except Exception as error:
        messages.put(("error", f"worker {index}: {type(error).__name__}: {error}"))


def _collect(messages: multiprocessing.Queue, kind: str, processes: list) -> list:
    """One `kind` message from every process; raise at the first error or dead process."""
    collected = []
    while len(collected) < len(processes):
        try:
            what, payload = messages.get(timeout=5)
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a worker process died (exit codes {dead})") from None
            continue
        if what == "error":
            raise RuntimeError(payload)
        if what == kind:
            collected.append(payload)
    return collected


def concurrent_throughput(cfg: DictConfig, count: int, streams: int, engine: str,
                          precision: str) -> Throughput:
    """(c): K worker processes on the device(s) train S baseline trials each, all with different
    seeds, started together; throughput = all their images / time until the last finishes."""
    context = multiprocessing.get_context("spawn")
    go, messages = context.Event(), context.Queue()
    config = OmegaConf.to_container(cfg, resolve=True)
    processes = [context.Process(target=_concurrent_worker,
                                 args=(config, index, count, streams, engine, precision, go,
                                       messages))
                 for index in range(count)]
    for process in processes:
        process.start()
    try:
        _collect(messages, "ready", processes)
        start = time.monotonic()
        go.set()
        finished = _collect(messages, "done", processes)
    finally:
        go.set()
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    n = sum(images for images, _, _ in finished)
    seconds = max(end for _, end, _ in finished) - start
    trials = sorted(trial for _, _, per_worker in finished for trial in per_worker)
    engines = {engine for _, _, engine in trials}
    return Throughput(f"(c) {count} worker{'s' if count > 1 else ''} x {streams} stream"
                      f"{'s' if streams > 1 else ''}, compile={engine}, {precision}", n / seconds,
                      n, seconds, [accuracy for _, accuracy, _ in trials],
                      [seed for seed, _, _ in trials],
                      engines.pop() if len(engines) == 1 else "mixed", precision)


def time_study_slice(cfg: DictConfig, workers: int, streams: int) -> dict:
    """(d): run `python -m study.sweep` on the slice in a fresh study; wall time of the command."""
    SLICE_STORAGE.parent.mkdir(parents=True, exist_ok=True)
    SLICE_STORAGE.unlink(missing_ok=True)
    storage = f"sqlite:///{SLICE_STORAGE}"
    overrides = [*cfg.bench.study, "name=bench-slice", f"storage={storage}",
                 f"data.cache_dir={cfg.data.cache_dir}"]
    if cfg.data.path is not None:
        overrides.append(f"data.path={cfg.data.path}")
    for key, value in (("sweep.workers", workers), ("sweep.streams", streams)):
        if not any(o.startswith(f"{key}=") for o in overrides):
            overrides.append(f"{key}={value}")
    command = [sys.executable, "-m", "study.sweep", *overrides]
    log_path = SLICE_STORAGE.with_suffix(".log")
    log.info("(d) timing: %s (its log: %s)", " ".join(command[1:]), log_path)
    start = time.perf_counter()
    with log_path.open("w") as log_file:
        returncode = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if returncode != 0:
        last_line = (log_path.read_text().strip().splitlines() or ["(no output)"])[-1]
        return {"slice": list(cfg.bench.study), "overrides": overrides, "wall_time_s": seconds,
                "error": last_line}
    study = optuna.load_study(study_name="bench-slice", storage=storage)
    trials = study.get_trials(deepcopy=False)
    accuracy = {}
    for trial in trials:
        if trial.user_attrs.get("design_point") == "baseline" and trial.value is not None:
            accuracy.setdefault("baseline", []).append(trial.value)
    return {"slice": list(cfg.bench.study), "overrides": overrides, "wall_time_s": seconds,
            "trials": len(trials),
            "complete": sum(t.state.name == "COMPLETE" for t in trials),
            "epochs_per_trial": study_spec(study).setting("train.epochs"),
            "baseline_test_accuracy": accuracy.get("baseline", [])}


def bench_images(cfg: DictConfig) -> Images:
    """The data of the throughput runs: bench.images caps the training images (more than the
    data holds are trained as several epochs of all of it)."""
    data_cfg = cfg.data.copy()
    data_cfg.train_subset = data_cfg.test_subset = None
    images = load_images(data_cfg)
    # a data.train_subset beyond the data still stops with take_subsets' error, as in a sweep
    n_train = min(cfg.bench.images, cfg.data.train_subset or len(images.y_train))
    return take_subsets(images, n_train, cfg.data.test_subset)


def measure(label: str, run: Callable[[], Throughput]) -> Throughput:
    try:
        result = run()
    except Exception as error:  # one failed measurement must not lose the others
        log.exception("%s failed", label)
        return Throughput(label, float("nan"), 0, 0.0, error=f"{type(error).__name__}: {error}")
    log.info("%s: %.0f images/s (%d images in %.1f s)", result.label, result.images_per_s,
             result.images, result.seconds)
    return result


def matmul_rates(device: torch.device, largest: int = MATMUL_SIZE, seconds: float = 1.0
                 ) -> dict[str, tuple[int, float]]:
    """The roofline: (size, GFLOP/s) of a square matmul on the device, in fp32 and in bf16, each
    repeated for about `seconds` after a warm-up: what this device's arithmetic reaches at best.
    The size doubles from SMALLEST_MATMUL up to `largest` while one product takes under a tenth
    of `seconds`, so that a precision the device only emulates is measured at a size that fits
    the time (bf16 on the 2-core AVX2 CPU: one 2048² product took about 45 s, at 0.4 GFLOP/s)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rates = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        size = SMALLEST_MATMUL
        while True:
            a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
            a @ b  # the warm-up
            sync()
            start = time.perf_counter()
            a @ b
            sync()
            if size >= largest or time.perf_counter() - start > seconds / 10:
                break
            size *= 2
        runs, start = 0, time.perf_counter()
        while runs == 0 or time.perf_counter() - start < seconds:
            a @ b
            runs += 1
            sync()
        rates[precision] = (size, 2 * size ** 3 * runs / (time.perf_counter() - start) / 1e9)
    return rates


def repeatability(throughput: list[dict]) -> list[dict]:
    """(e): trials of (b) and (c) that trained the same config with the same seed (alone, in
    other processes, beside other trials): how far apart their test accuracies are."""
    runs = defaultdict(list)
    for row in throughput:
        for seed, accuracy in zip(row["seeds"], row["test_accuracy"], strict=True):
            runs[(row["engine"], row["precision"], seed)].append(accuracy)
    return [{"engine": engine, "precision": precision, "seed": seed, "test_accuracy": accuracy,
             "spread": max(accuracy) - min(accuracy)}
            for (engine, precision, seed), accuracy in runs.items() if len(accuracy) > 1]
