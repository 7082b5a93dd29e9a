"""The training engine: `train_trial(cfg, data)` -> TrialResult, and the device helpers.

Data is already preprocessed on the device (study.training.data); each epoch is shuffled and
augmented there in one go, metrics reach the host once per epoch (plus a finiteness check every
DIVERGENCE_CHECK_STEPS steps, so that a diverging trial stops at once: a result, not a crash).
Each test first recomputes the BatchNorm statistics over a fixed sample of training images
(`train.bn_stats=exact`, study.training.evaluation); it draws no random numbers and puts
training's own statistics back, so it never changes training. A trial whose accuracy on training
images stays at chance learned nothing: its outcome is `stalled`, like a diverged one a result of
its settings. `train.compile` picks how a step runs (`graph`: one CUDA graph; `none`: eager;
`model`: torch.compile), `train.precision` its arithmetic: docs/speed.md.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from study.errors import UserError
from study.outcomes import COMPLETE, DIVERGED, STALLED
from study.training.data import DeviceData, crop_flip, pad_for_crop
from study.training.evaluation import CHANCE_ACCURACY, Evaluation, at_chance, sample_indices
from study.training.model import build_model, count_parameters
from study.training.precision import input_dtype, resolve_precision

CROP_PAD = 4  # px of zero padding for random crops
DIVERGENCE_CHECK_STEPS = 50  # steps between host-side checks that the loss is finite

log = logging.getLogger("study.training.engine")
T = TypeVar("T")


@dataclass
class TrialResult:
    test_accuracy: float
    outcome: str  # complete | diverged | stalled
    train_loss: list[float] = field(default_factory=list)  # per epoch
    train_accuracy: list[float] = field(default_factory=list)  # per epoch
    # the final network on the fixed training sample (BatchNorm on batch statistics, dropout
    # off): what the test accuracy is checked against; None for a diverged trial
    train_sample_accuracy: float | None = None
    bn_stats: str = ""  # what the test normalised with: exact | running | none (no BatchNorm)
    reason: str | None = None  # why a trial diverged or stalled
    epoch_test_accuracy: dict[int, float] = field(default_factory=dict)  # epoch (from 1): acc
    wall_time_s: float = 0.0
    epochs_run: int = 0
    diverged_at_step: int | None = None
    parameters: int = 0
    device: str = ""
    engine: str = ""  # none | graph | model (train.compile as resolved)
    precision: str = ""  # fp32 | bf16 (train.precision as resolved)

    def as_dict(self) -> dict:
        return asdict(self)


def pick_device(worker: int = 0) -> torch.device:
    """The GPU for this worker (workers spread over a machine's GPUs), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", worker % torch.cuda.device_count())
    return torch.device("cpu")


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity (a container's or taskset's share),
    or OMP_NUM_THREADS where that asks for fewer (a test runner splitting the machine)."""
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count()) or 1
    asked = os.environ.get("OMP_NUM_THREADS", "")
    return min(cores, int(asked)) if asked.isdigit() and int(asked) > 0 else cores


def worker_device(index: int, count: int) -> torch.device:
    """The device of worker `index` of `count` processes on this machine; on the CPU the
    workers share the usable cores instead of each using all of them."""
    device = pick_device(index)
    if device.type == "cpu":
        torch.set_num_threads(max(1, usable_cores() // count))
    return device


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def learning_rate(step: int, total_steps: int, train_cfg: DictConfig) -> float:
    """Linear warm-up to train.lr over `warmup` of the steps, then linear (onecycle) or cosine
    decay to zero; `constant` keeps train.lr throughout."""
    peak = train_cfg.lr
    warmup_steps = int(train_cfg.warmup * total_steps)
    if train_cfg.schedule == "constant":
        return peak
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if train_cfg.schedule == "onecycle":
        return peak * (1 - progress)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, train_cfg: DictConfig,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """SGD or AdamW. On CUDA the learning rate is a device tensor read by the fused kernel, so a
    step captured in a CUDA graph follows the schedule (`set_learning_rate` updates it in place);
    AdamW must also be built `capturable` (its step count then lives on the device)."""
    device = next(model.parameters()).device
    fused = device.type == "cuda"
    lr = torch.tensor(train_cfg.lr, device=device) if fused else train_cfg.lr
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=train_cfg.momentum,
                               nesterov=train_cfg.nesterov and train_cfg.momentum > 0,
                               weight_decay=train_cfg.weight_decay, fused=fused)
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(train_cfg.momentum, 0.999),
                             weight_decay=train_cfg.weight_decay, fused=fused,
                             capturable=capturable)


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)  # a device-side write: no host synchronisation
        else:
            group["lr"] = value


def resolve_engine(engine: str, device: torch.device) -> str:
    """train.compile: `auto` is a CUDA graph of the whole step on CUDA and eager on the CPU."""
    if engine == "auto":
        return "graph" if device.type == "cuda" else "none"
    if engine == "graph" and device.type != "cuda":
        raise UserError("train.compile=graph needs a CUDA GPU; use train.compile=none on the CPU")
    return engine


class TrainStep:
    """One optimizer step on a batch; the summed loss and correct predictions of an epoch
    accumulate on the device (`loss_sum`, `correct`), so the step loop never waits for the GPU.

    After `capture`, a call copies the batch into static buffers and replays one CUDA graph of
    forward, backward and optimizer step: one launch instead of hundreds, which is what bounds a
    small CNN's step time on a fast GPU.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, bf16: bool) -> None:
        self.model, self.optimizer, self.bf16 = model, optimizer, bf16
        device = next(model.parameters()).device
        self.device_type = device.type
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # cache_enabled=False: autocast's weight cache would outlive a graph capture
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16,
                            cache_enabled=False):
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach().float() * len(y)
        self.correct += (logits.argmax(1) == y).sum()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.graph is None:
            self.optimizer.zero_grad(set_to_none=True)
            self._step(x, y)
        else:
            self.static_x.copy_(x)
            self.static_y.copy_(y)
            self.graph.replay()

    def warm_up(self, x: torch.Tensor, y: torch.Tensor, steps: int = 3) -> None:
        """Run `steps` steps (which creates the optimizer state), then undo them: parameters and
        buffers get their values back and the optimizer state is zeroed, which for SGD momentum
        and Adam moments and step count is exactly a fresh optimizer."""
        state = [*self.model.parameters(), *self.model.buffers()]
        saved = [t.detach().clone() for t in state]
        with warnings.catch_warnings():  # a capturable optimizer warns when run uncaptured
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            for _ in range(steps):
                self(x, y)
        with torch.no_grad():
            for tensor, value in zip(state, saved, strict=True):
                tensor.copy_(value)
            for tensor in self._optimizer_state():
                tensor.zero_()
            self.loss_sum.zero_()
            self.correct.zero_()
        self.optimizer.zero_grad(set_to_none=True)

    def _optimizer_state(self) -> list[torch.Tensor]:
        return [value for per_param in self.optimizer.state.values()
                for value in per_param.values() if isinstance(value, torch.Tensor)]

    def capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record the step on batches shaped like (x, y) into a CUDA graph: on the trial's own
        stream when it has one (trials on streams, study.training.streams says why), else on
        PyTorch's capture stream (one trial at a time: one live graph)."""
        current = torch.cuda.current_stream()
        own = current if current != torch.cuda.default_stream() else None
        side = torch.cuda.Stream()
        side.wait_stream(current)
        with torch.cuda.stream(side):  # warm-up on a side stream, as graph capture requires
            self.warm_up(x, y)
        current.wait_stream(side)
        self.static_x, self.static_y = x.clone(), y.clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=own):
            self._step(self.static_x, self.static_y)
        self.graph = graph
        # capture records without running; the accumulators must start the epoch at zero
        self.loss_sum.zero_()
        self.correct.zero_()


# epoch, train loss, train accuracy, test accuracy (None: not evaluated)
OnEpoch = Callable[[int, float, float, float | None], None]


def train_trial(cfg: DictConfig, data: DeviceData, on_epoch: OnEpoch | None = None
                ) -> TrialResult:
    """Train cfg's model on data; on_epoch(epoch, train_loss, train_accuracy, test_accuracy)
    after each epoch (test_accuracy None for an epoch that was not evaluated)."""
    return run_to_end(trial_steps(cfg, data, on_epoch))


def run_to_end(steps: Generator[None, None, T]) -> T:
    """Drive a generator to its end and return what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def trial_steps(cfg: DictConfig, data: DeviceData, on_epoch: OnEpoch | None = None
                ) -> Generator[None, None, TrialResult]:
    """`train_trial` as a generator that yields after every optimizer step, so that one process
    can interleave several trials (study.training.streams); it returns the TrialResult."""
    start = time.perf_counter()
    device = data.x_train.device
    engine = resolve_engine(cfg.train.compile, device)
    precision = resolve_precision(cfg.train.precision, device)
    bf16, dtype = precision == "bf16", input_dtype(precision)
    torch.backends.cudnn.benchmark = True  # a trial's shapes are fixed: autotune convs once
    torch.manual_seed(cfg.train.seed)
    generator = torch.Generator(device).manual_seed(cfg.train.seed)

    model = build_model(cfg.model).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg.train, capturable=engine == "graph")
    result = TrialResult(test_accuracy=CHANCE_ACCURACY, outcome=COMPLETE, engine=engine,
                         precision=precision, parameters=count_parameters(model),
                         device=device_name(device))
    step_fn = TrainStep(torch.compile(model) if engine == "model" else model, optimizer, bf16)
    x_test = data.x_test.to(dtype)  # no copy when the data is stored for this precision
    sample = sample_indices(len(data.y_train), cfg.train.bn_images).to(device)
    evaluate = Evaluation(model, data.x_train[sample].to(dtype), data.y_train[sample], x_test,
                          data.y_test, cfg.train.eval_batch_size, bf16,
                          exact=cfg.train.bn_stats == "exact")
    result.bn_stats = evaluate.bn_stats

    n = len(data.y_train)
    batch_size = min(cfg.train.batch_size, n)
    steps_per_epoch = n // batch_size  # the last partial batch is dropped
    total_steps = cfg.train.epochs * steps_per_epoch
    x_train = data.x_train.to(dtype)
    x_train = pad_for_crop(x_train, CROP_PAD) if cfg.train.augment else x_train

    step = 0
    for epoch in range(cfg.train.epochs):
        model.train()
        order = torch.randperm(n, device=device, generator=generator)
        x_epoch = x_train[order]  # the whole epoch augmented at once: a few large kernels
        if cfg.train.augment:
            x_epoch = crop_flip(x_epoch, CROP_PAD, generator)
        x_epoch = x_epoch.contiguous(memory_format=torch.channels_last)
        y_epoch = data.y_train[order]
        if engine == "graph" and step_fn.graph is None:
            try:
                step_fn.capture(x_epoch[:batch_size], y_epoch[:batch_size])
            except RuntimeError as error:  # the trial still counts; it just runs slower
                log.warning("CUDA graph capture failed, training eagerly: %s", error)
                result.engine = engine = "none"
        step_fn.loss_sum.zero_()
        step_fn.correct.zero_()
        for i in range(steps_per_epoch):
            batch = slice(i * batch_size, (i + 1) * batch_size)
            set_learning_rate(optimizer, learning_rate(step, total_steps, cfg.train))
            step_fn(x_epoch[batch], y_epoch[batch])
            step += 1
            yield
            if step % DIVERGENCE_CHECK_STEPS == 0 and not torch.isfinite(step_fn.loss_sum):
                break
        seen = (i + 1) * batch_size
        tested = cfg.train.test_every_epoch or epoch == cfg.train.epochs - 1
        metrics = [step_fn.loss_sum, step_fn.correct.float()]
        if tested:
            metrics += [correct.float() for correct in evaluate()]
        loss_sum, correct, *tested_correct = torch.stack(metrics).tolist()  # the one host sync
        epoch_loss = loss_sum / seen
        result.epochs_run = epoch + 1
        if not math.isfinite(epoch_loss):
            result.outcome, result.diverged_at_step = DIVERGED, step
            result.reason = f"its training loss was not finite by step {step}"
            result.test_accuracy = CHANCE_ACCURACY  # not an earlier epoch's accuracy
            result.train_sample_accuracy = None
            break
        result.train_loss.append(epoch_loss)
        result.train_accuracy.append(correct / seen)
        test_accuracy = None
        if tested:
            result.train_sample_accuracy = tested_correct[0] / len(sample)
            test_accuracy = tested_correct[1] / len(data.y_test)
            result.epoch_test_accuracy[epoch + 1] = test_accuracy
            result.test_accuracy = test_accuracy  # the last epoch's is the trial's result
        if on_epoch:
            on_epoch(epoch, epoch_loss, result.train_accuracy[-1], test_accuracy)

    if result.outcome == COMPLETE and at_chance(result.train_accuracy[-1], seen) \
            and at_chance(result.train_sample_accuracy, len(sample)):
        result.outcome = STALLED  # its test accuracy is kept: measured, but not compared
        result.reason = (f"it learned nothing: {result.train_accuracy[-1]:.1%} training accuracy "
                         f"in its last epoch, {result.train_sample_accuracy:.1%} on {len(sample)} "
                         f"fixed training images (chance: {CHANCE_ACCURACY:.0%})")
    result.wall_time_s = time.perf_counter() - start
    return result
