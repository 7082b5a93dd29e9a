import itertools

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
)
from study.training.model import build_model
from tests.conftest import compose

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def synthetic():
    return to_device(synthetic_images(2000, 500), "standardize", CPU)


def test_short_run_on_synthetic_data_learns_far_above_chance(synthetic) -> None:
    cfg = compose("data=synthetic", "train.epochs=3", "model.channels=8")
    result = train_trial(cfg, synthetic)
    assert result.outcome == "complete"
    assert result.test_accuracy > 4 * CHANCE_ACCURACY
    assert len(result.train_loss) == len(result.train_accuracy) == 3
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.wall_time_s > 0 and result.device == "cpu"


def test_testing_after_every_epoch_records_the_curve_and_changes_no_result(synthetic) -> None:
    cfg = compose("data=synthetic", "train.epochs=3", "model.channels=8", "train.seed=3")
    seen: list[tuple[int, float | None]] = []
    every = train_trial(cfg, synthetic, on_epoch=lambda e, loss, acc, test: seen.append((e, test)))
    cfg.train.test_every_epoch = False
    last = train_trial(cfg, synthetic)
    assert list(every.epoch_test_accuracy) == [1, 2, 3] and list(last.epoch_test_accuracy) == [3]
    assert [test for _, test in seen] == list(every.epoch_test_accuracy.values())
    # the final evaluation is the trial's result, and testing draws no random numbers and
    # leaves batch norm alone: training is bit-identical either way
    assert every.test_accuracy == every.epoch_test_accuracy[3] == last.test_accuracy
    assert every.train_loss == last.train_loss
    assert len(set(every.epoch_test_accuracy.values())) > 1


def test_same_seed_gives_identical_results_on_cpu(synthetic) -> None:
    cfg = compose("data=synthetic", "model.channels=8", "train.seed=7")
    a, b = train_trial(cfg, synthetic), train_trial(cfg, synthetic)
    assert a.test_accuracy == b.test_accuracy and a.train_loss == b.train_loss


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
def test_warm_up_before_graph_capture_leaves_no_trace(synthetic, optimizer: str) -> None:
    """The steps that CUDA graph capture needs beforehand are undone: training afterwards is
    bit-identical to training a fresh model with a fresh optimizer."""
    cfg = compose("data=synthetic", "model.channels=8", f"train={optimizer}")
    x, y = synthetic.x_train[:64], synthetic.y_train[:64]

    def trained(warm_up: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = build_model(cfg.model)
        step = TrainStep(model, make_optimizer(model, cfg.train))
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
