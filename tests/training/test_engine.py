"""The training engine (study.training.engine) and its precision (study.training.precision): it
learns, a diverged trial is a result, a seed gives the same trial twice within each precision,
and testing after every epoch changes nothing."""

import itertools
import os
from pathlib import Path

import pytest
import torch

from study.errors import UserError
from study.training.data import synthetic_images, to_device
from study.training.engine import (
    CHANCE_ACCURACY,
    TrainStep,
    learning_rate,
    make_optimizer,
    train_trial,
    usable_cores,
    worker_device,
)
from study.training.model import build_model
from study.training.precision import cpu_has_bf16, resolve_precision
from tests.conftest import compose

CPU = torch.device("cpu")
PRECISIONS = ("fp32", "bf16")


@pytest.fixture(scope="module")
def synthetic():
    return to_device(synthetic_images(2000, 500), "standardize", CPU)


def _each_precision(train: int, test: int) -> dict:
    """That many synthetic images as each precision stores them."""
    images = synthetic_images(train, test)
    return {p: to_device(images, "standardize", CPU, precision=p) for p in PRECISIONS}


@pytest.fixture(scope="module")
def stored():
    """The synthetic set as each precision stores it."""
    return _each_precision(2000, 500)


@pytest.fixture(scope="module")
def few():
    """Fewer images as each precision stores them, for the tests that compare two trainings
    and need no learning: a bf16 convolution runs about 6x slower on a CPU without bf16."""
    return _each_precision(400, 200)


SLOW_BF16 = ["fp32", pytest.param("bf16", marks=pytest.mark.slow)]


def test_auto_is_bf16_where_the_cpu_has_bf16_instructions() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert cpu_has_bf16() == native  # fails where torch lost the private query the code uses
    assert resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"


@pytest.mark.parametrize("precision", ["fp32", pytest.param(  # bf16 without hardware: minutes
    "bf16", marks=[pytest.mark.heavy, pytest.mark.slow])])
def test_a_trial_trains_and_records_its_precision(stored, precision: str) -> None:
    cfg = compose("data=synthetic", "train.epochs=3", "model.channels=8",
                  f"train.precision={precision}")
    result = train_trial(cfg, stored[precision])
    assert result.precision == precision and result.test_accuracy > 4 * CHANCE_ACCURACY
    expected = torch.bfloat16 if precision == "bf16" else torch.float32
    assert stored[precision].x_train.dtype == expected
    assert stored[precision].x_train.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_short_run_on_synthetic_data_learns_far_above_chance(synthetic) -> None:
    cfg = compose("data=synthetic", "train.epochs=3", "model.channels=8")
    result = train_trial(cfg, synthetic)
    assert result.outcome == "complete"
    assert result.test_accuracy > 4 * CHANCE_ACCURACY
    assert len(result.train_loss) == len(result.train_accuracy) == 3
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.wall_time_s > 0 and result.device == "cpu"


@pytest.mark.slow
@pytest.mark.parametrize("precision", SLOW_BF16)
def test_testing_after_every_epoch_records_the_curve_and_changes_no_result(few, precision
                                                                          ) -> None:
    cfg = compose("data=synthetic", "train.epochs=2", "model.channels=8", "train.seed=3",
                  f"train.precision={precision}")
    seen: list[tuple[int, float | None]] = []
    data = few[precision]
    every = train_trial(cfg, data, on_epoch=lambda e, loss, acc, test: seen.append((e, test)))
    cfg.train.test_every_epoch = False
    last = train_trial(cfg, data)
    assert list(every.epoch_test_accuracy) == [1, 2] and list(last.epoch_test_accuracy) == [2]
    assert [test for _, test in seen] == list(every.epoch_test_accuracy.values())
    # the final evaluation is the trial's result, and testing draws no random numbers and
    # leaves batch norm alone: training is bit-identical either way
    assert every.test_accuracy == every.epoch_test_accuracy[2] == last.test_accuracy
    assert every.train_loss == last.train_loss
    assert len(set(every.epoch_test_accuracy.values())) > 1


@pytest.mark.slow
@pytest.mark.parametrize("precision", SLOW_BF16)
def test_same_seed_gives_identical_results_on_cpu(few, precision: str) -> None:
    cfg = compose("data=synthetic", "model.channels=8", "train.seed=7",
                  f"train.precision={precision}")
    a, b = train_trial(cfg, few[precision]), train_trial(cfg, few[precision])
    assert a.test_accuracy == b.test_accuracy and a.train_loss == b.train_loss


@pytest.mark.slow
def test_diverging_trial_stops_and_is_a_result(synthetic) -> None:
    cfg = compose("data=synthetic", "train.epochs=5", "model.channels=8", "train.lr=1e4",
                  "train.schedule=constant", "model.normalization=none")
    result = train_trial(cfg, synthetic)
    assert result.outcome == "diverged"
    assert result.test_accuracy == CHANCE_ACCURACY
    assert result.epochs_run == 1  # stopped in the first epoch, not after all five
    assert result.epoch_test_accuracy == {}  # a diverged epoch has no test accuracy
    assert result.diverged_at_step is not None and result.diverged_at_step <= 50


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedules_warm_up_to_the_peak_then_decay_to_zero(schedule: str) -> None:
    cfg = compose(f"train.schedule={schedule}", "train.lr=0.1", "train.warmup=0.2").train
    lrs = [learning_rate(s, 100, cfg) for s in range(100)]
    assert lrs[0] < 0.01 and max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 19
    assert lrs[-1] < 0.005 and all(a >= b for a, b in itertools.pairwise(lrs[19:]))
    constant = compose("train.schedule=constant", "train.lr=0.1").train
    assert {learning_rate(s, 100, constant) for s in range(100)} == {0.1}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_warm_up_before_graph_capture_leaves_no_trace(stored, optimizer: str) -> None:
    """The steps that CUDA graph capture needs beforehand are undone: training afterwards is
    bit-identical to training a fresh model with a fresh optimizer."""
    cfg = compose("data=synthetic", "model.channels=8", f"train={optimizer}")
    x, y = stored["fp32"].x_train[:64], stored["fp32"].y_train[:64]

    def trained(warm_up: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = build_model(cfg.model)
        step = TrainStep(model, make_optimizer(model, cfg.train), bf16=False)
        if warm_up:
            step.warm_up(x, y)
            assert step.loss_sum.item() == 0 and step.correct.item() == 0
        torch.manual_seed(1)  # the same dropout masks from here on
        for _ in range(3):
            step(x, y)
        return [*model.parameters(), *model.buffers(), step.loss_sum]

    for fresh, warmed in zip(trained(False), trained(True), strict=True):
        assert torch.equal(fresh, warmed)


def test_graph_engine_on_the_cpu_is_a_user_error(synthetic) -> None:
    cfg = compose("data=synthetic", "train.compile=graph")
    with pytest.raises(UserError, match=r"train\.compile=graph needs a CUDA GPU"):
        train_trial(cfg, synthetic)


def test_cpu_workers_share_the_cores_this_process_may_use(monkeypatch) -> None:
    """The affinity's cores, or fewer where OMP_NUM_THREADS asks (a value that is no positive
    count is ignored); each of `count` workers takes its share, at least one."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    try:
        for asked, cores in (("", 4), ("2", 2), ("16", 4), ("0", 4), ("two", 4)):
            monkeypatch.setenv("OMP_NUM_THREADS", asked)
            assert usable_cores() == cores, asked
        monkeypatch.delenv("OMP_NUM_THREADS")
        for count, share in ((1, 4), (2, 2), (3, 1), (8, 1)):
            assert worker_device(0, count) == CPU and torch.get_num_threads() == share
    finally:
        torch.set_num_threads(threads)
