import pytest
import torch

from study.training.data import synthetic_images, to_device
from study.training.engine import train_trial, trial_steps
from study.training.streams import TrialStreams
from tests.conftest import compose

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def synthetic():
    return to_device(synthetic_images(300, 100), "standardize", CPU)


def _configs(precision: str = "auto"):
    # dropout and augmentation draw random numbers all along; different batch sizes give the
    # trials different numbers of steps, so one ends while the others still run
    return [compose("data=synthetic", "model.channels=8", "model.dropout=0.5", f"train.seed={s}",
                    f"train.batch_size={b}", "train.epochs=2", f"train.precision={precision}")
            for s, b in ((0, 64), (1, 128), (2, 32))]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", pytest.param(  # bf16 without hardware: minutes
    "bf16", marks=pytest.mark.heavy)])
def test_interleaved_trials_train_exactly_as_they_do_alone(synthetic, precision: str) -> None:
    alone = [train_trial(cfg, synthetic) for cfg in _configs(precision)]
    streams = TrialStreams(2, CPU)
    pending = list(enumerate(_configs(precision)))
    together, turns = {}, 0
    while pending or streams.running:
        while pending and streams.has_room():
            index, cfg = pending.pop(0)
            streams.start(index, trial_steps(cfg, synthetic))
        assert len(streams.running) <= 2
        together.update(streams.turn())
        turns += 1
    for index, result in enumerate(alone):
        assert together[index].train_loss == result.train_loss
        assert together[index].test_accuracy == result.test_accuracy
    steps = [2 * (300 // cfg.train.batch_size) for cfg in _configs()]
    assert turns < sum(steps) + 3  # the trials did run side by side


@pytest.mark.slow
def test_a_trial_that_raises_is_dropped_and_the_others_go_on(synthetic) -> None:
    def broken():
        yield
        raise RuntimeError("simulated CUDA error")

    cfg = _configs()[0]
    streams = TrialStreams(2, CPU)
    streams.start("broken", broken())
    streams.start("fine", trial_steps(cfg, synthetic))
    streams.turn()
    with pytest.raises(RuntimeError, match="simulated"):
        streams.turn()
    assert [trial.key for trial in streams.running] == ["fine"]
    finished = []
    while streams.running:
        finished += streams.turn()
    assert finished[0][0] == "fine"
    assert finished[0][1].train_loss == train_trial(cfg, synthetic).train_loss


def test_a_new_trial_takes_the_slot_an_ended_one_left_never_a_running_one_s() -> None:
    # on CUDA a slot is a stream a trial's graph is captured on: two running trials sharing
    # one would share its cuBLAS workspace (study.training.streams)
    def steps(n: int):
        for _ in range(n):
            yield
        return n

    trials = TrialStreams(3, torch.device("cpu"))
    for key, n in (("a", 2), ("b", 1), ("c", 3)):
        trials.start(key, steps(n))
    assert [t.slot for t in trials.running] == [0, 1, 2]
    trials.turn()
    assert trials.turn() == [("b", 1)]  # b ended first: its slot, 1, is free
    trials.start("d", steps(5))
    assert sorted((t.key, t.slot) for t in trials.running) == [("a", 0), ("c", 2), ("d", 1)]
