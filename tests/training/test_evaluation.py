"""How a trial is measured (study.training.evaluation): the test accuracy is the network's, with
BatchNorm statistics recomputed from its weights, measuring changes nothing in training, dropout
is off at test time, and a trial that learned nothing is a result of its own."""

import copy

import pytest
import torch
from torch.optim.swa_utils import update_bn

from study.training import engine
from study.training.data import synthetic_images, to_device
from study.training.evaluation import CHANCE_ACCURACY, Evaluation, at_chance, count_correct
from study.training.model import build_model
from tests.conftest import compose

CPU = torch.device("cpu")
# few optimizer steps at a large batch: the running statistics lag far behind the weights
FEW_LARGE_STEPS = ("data=synthetic", "model.channels=8", "train.precision=fp32",
                   "train.batch_size=500", "train.epochs=2")


@pytest.fixture(scope="module")
def synthetic():
    return to_device(synthetic_images(2000, 500), "standardize", CPU, precision="fp32")


def trained(monkeypatch: pytest.MonkeyPatch, data, *overrides: str
            ) -> tuple[engine.TrialResult, torch.nn.Module]:
    """A trial's result and the network it trained."""
    built = []
    monkeypatch.setattr(engine, "build_model", lambda cfg: built.append(build_model(cfg))
                        or built[-1])
    result = engine.train_trial(compose(*overrides), data)
    return result, built[-1]


def accuracy(model: torch.nn.Module, data) -> float:
    return count_correct(model.eval(), data.x_test, data.y_test, 500, False).item() / len(
        data.y_test)


@pytest.mark.slow
def test_the_test_accuracy_uses_statistics_recomputed_from_the_final_weights(
        monkeypatch, synthetic) -> None:
    result, model = trained(monkeypatch, synthetic, *FEW_LARGE_STEPS)
    fresh = copy.deepcopy(model)  # PyTorch's own recomputation, over every training image
    update_bn([synthetic.x_train[i:i + 100] for i in range(0, 2000, 100)], fresh)
    assert result.bn_stats == "exact"
    assert abs(result.test_accuracy - accuracy(fresh, synthetic)) <= 0.01
    # the network leaves with training's own running statistics, and those are far off
    assert accuracy(model, synthetic) < result.test_accuracy - 0.15
    # measured the running way, the trial records that artefact
    running, _ = trained(monkeypatch, synthetic, *FEW_LARGE_STEPS, "train.bn_stats=running")
    assert running.bn_stats == "running"
    assert running.test_accuracy == pytest.approx(accuracy(model, synthetic))
    # the check the report reads: the network on training images, as training normalises them
    assert abs(result.train_sample_accuracy - result.test_accuracy) < 0.05
    assert running.train_sample_accuracy == result.train_sample_accuracy


@pytest.mark.slow
def test_training_is_bit_identical_however_it_is_measured(monkeypatch, synthetic) -> None:
    exact, exact_model = trained(monkeypatch, synthetic, *FEW_LARGE_STEPS, "train.epochs=3")
    running, running_model = trained(monkeypatch, synthetic, *FEW_LARGE_STEPS, "train.epochs=3",
                                     "train.bn_stats=running", "train.test_every_epoch=false")
    assert exact.train_loss == running.train_loss
    assert exact.train_accuracy == running.train_accuracy
    for (name, a), (_, b) in zip(exact_model.state_dict().items(),
                                 running_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # weights and the running statistics training kept


@pytest.mark.slow
def test_a_network_without_batch_norm_is_measured_as_it_is(monkeypatch, synthetic) -> None:
    exact, _ = trained(monkeypatch, synthetic, *FEW_LARGE_STEPS, "model.normalization=group")
    running, _ = trained(monkeypatch, synthetic, *FEW_LARGE_STEPS, "model.normalization=group",
                         "train.bn_stats=running")
    assert exact.bn_stats == running.bn_stats == "none"
    assert exact.test_accuracy == running.test_accuracy


def test_dropout_is_off_and_nothing_is_random_at_test_time(synthetic) -> None:
    torch.manual_seed(0)
    model = build_model(compose("model.channels=8", "model.dropout=0.9").model)
    without = copy.deepcopy(model)
    without[-2].p = 0.0  # the dropout before the classifier
    measured = [Evaluation(m, synthetic.x_train[:300], synthetic.y_train[:300],
                           synthetic.x_test, synthetic.y_test, 128, False, exact=True)()
                for m in (model, model, without)]
    assert all(torch.equal(a, b) for m in measured[1:] for a, b in zip(measured[0], m,
                                                                        strict=True))


@pytest.mark.slow
def test_a_trial_that_learned_nothing_is_stalled_with_its_reason(monkeypatch, synthetic) -> None:
    result, _ = trained(monkeypatch, synthetic, "data=synthetic", "model.channels=8",
                        "train.precision=fp32", "train.lr=1e-8", "train.schedule=constant")
    assert result.outcome == "stalled"
    assert "learned nothing" in result.reason and "2000 fixed training images" in result.reason
    assert result.test_accuracy == pytest.approx(CHANCE_ACCURACY, abs=0.05)  # measured, kept


def test_chance_is_three_standard_errors() -> None:
    # 3 SE of a 10% accuracy over 1,000 images is 2.85 points
    assert at_chance(0.128, 1000) and not at_chance(0.129, 1000)
    assert at_chance(0.10, 100) and not at_chance(0.20, 100)


@pytest.mark.slow
def test_how_many_images_the_test_takes_at_a_time_changes_no_measurement(monkeypatch,
                                                                        synthetic) -> None:
    one, _ = trained(monkeypatch, synthetic, *FEW_LARGE_STEPS, "train.eval_batch_size=1000")
    other, _ = trained(monkeypatch, synthetic, *FEW_LARGE_STEPS, "train.eval_batch_size=96")
    assert one.train_sample_accuracy == other.train_sample_accuracy
    assert one.test_accuracy == pytest.approx(other.test_accuracy, abs=0.004)  # float sums
