"""The CUDA paths: bf16 channels_last data, the whole step in one CUDA graph, trials side by side
on CUDA streams. Skipped without a GPU; `pytest tests/training/test_cuda.py` on a GPU machine
runs them. The CPU tests show the same code paths bit-identical; on a GPU cuDNN's atomics and
bf16 may round differently, so runs that take the same steps are compared by their first
epoch's mean training loss within rounding: another seed moves it by 0.02-0.03 (measured on the
CPU at this size: 2.006, 2.026, 2.033 for seeds 0-2), and a real bug (a step not taken, a
schedule not followed, a stream reading unfinished data) by far more."""

import pytest
import torch

from study.training.data import load_images, to_device
from study.training.engine import CHANCE_ACCURACY, train_trial, trial_steps
from study.training.streams import TrialStreams
from tests.conftest import cifar10_archive, compose

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
EARLY_LOSS_TOLERANCE = 0.005  # first epoch's mean training loss (about 2.0), same steps


def _cfg(*overrides: str):
    return compose(f"data.path={cifar10_archive()}", "data.train_subset=5000",
                   "data.test_subset=2000", "train.epochs=3", *overrides)


@pytest.fixture(scope="module")
def gpu_data():
    cfg = _cfg()
    return to_device(load_images(cfg.data), cfg.data.preprocessing, torch.device("cuda"))


def test_data_on_the_gpu_is_bf16_channels_last(gpu_data) -> None:
    assert gpu_data.x_train.dtype == torch.bfloat16
    assert gpu_data.x_train.is_contiguous(memory_format=torch.channels_last)


def test_the_graph_engine_captures_and_learns_as_eager_does(gpu_data) -> None:
    eager = train_trial(_cfg("train.compile=none"), gpu_data)
    graph = train_trial(_cfg("train.compile=graph"), gpu_data)
    print(f"eager: first epoch's loss {eager.train_loss[0]:.4f}, {eager.wall_time_s:.1f} s; "
          f"graph: {graph.train_loss[0]:.4f}, {graph.wall_time_s:.1f} s")
    assert (eager.engine, graph.engine) == ("none", "graph")  # no fallback to eager
    assert graph.test_accuracy > 3 * CHANCE_ACCURACY
    assert abs(graph.train_loss[0] - eager.train_loss[0]) < EARLY_LOSS_TOLERANCE
    assert graph.train_loss[-1] < graph.train_loss[0]


def test_the_same_seed_twice_gives_the_same_accuracy(gpu_data) -> None:
    first, second = (train_trial(_cfg(), gpu_data) for _ in range(2))
    print(f"same seed: first epoch's loss {first.train_loss[0]:.4f} and "
          f"{second.train_loss[0]:.4f}, accuracy {first.test_accuracy:.4f} and "
          f"{second.test_accuracy:.4f}")
    assert abs(first.train_loss[0] - second.train_loss[0]) < EARLY_LOSS_TOLERANCE


def test_trials_on_streams_train_as_they_do_alone(gpu_data) -> None:
    configs = [_cfg("train.seed=0"), _cfg("train.seed=1", "train.batch_size=256"),
               _cfg("train.seed=2", "train.batch_size=64", "model.dropout=0.25")]
    alone = [train_trial(cfg, gpu_data) for cfg in configs]
    streams, together = TrialStreams(3, torch.device("cuda")), {}
    for index, cfg in enumerate(configs):
        streams.start(index, trial_steps(cfg, gpu_data))
    while streams.running:
        together.update(streams.turn())
    for index, result in enumerate(alone):
        print(f"trial {index}: first epoch's loss alone {result.train_loss[0]:.4f}, on a "
              f"stream {together[index].train_loss[0]:.4f}")
        assert together[index].engine == "graph"
        assert abs(together[index].train_loss[0] - result.train_loss[0]) < EARLY_LOSS_TOLERANCE
