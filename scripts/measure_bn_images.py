"""How many training images exact BatchNorm statistics need (docs/statistics.md, "What is
measured"): trains quick-budget networks on their 2,500-image subset, then tests each with
statistics recomputed from independent draws of n images out of all 50,000 training images
(standardized with the subset's statistics, as the network saw its own).

    python -m scripts.measure_bn_images                     # the docs' four networks
    python -m scripts.measure_bn_images model.channels=64   # one network, any overrides

Prints, per network, its test accuracy with the running statistics and, per n, the mean and std
of the test accuracy over the draws (points). About 5 minutes per network on a 2-core CPU.
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
import torch
from omegaconf import DictConfig

from study.cli import compose_config
from study.training import engine
from study.training.data import DeviceData, load_images, to_device
from study.training.evaluation import Evaluation
from study.training.model import build_model

NETWORKS = ["train.seed=0", "train.batch_size=512", "model.activation=sigmoid", "train.lr=0.001"]
SIZES = (512, 1024, 2048, 4096, 8192)
DRAWS = 4
TEST_IMAGES = 5000
CPU = torch.device("cpu")


def trained_network(cfg: DictConfig, data: DeviceData
                    ) -> tuple[engine.TrialResult, torch.nn.Module]:
    """One trial trained exactly as the study trains it, and its network, which the engine
    does not return: the model it builds is kept on the way."""
    built: list[torch.nn.Module] = []

    def build_and_keep(model_cfg: DictConfig) -> torch.nn.Module:
        built.append(build_model(model_cfg))
        return built[-1]

    with mock.patch.object(engine, "build_model", build_and_keep):
        result = engine.train_trial(cfg, data)
    return result, built[0]


def measure(overrides: list[str], pool: torch.Tensor, pool_labels: torch.Tensor) -> str:
    cfg = compose_config(["budget=quick", f"data.test_subset={TEST_IMAGES}",
                          "data.preprocessing=standardize", "train.test_every_epoch=false",
                          "train.bn_stats=running", *overrides])
    images = load_images(cfg.data)
    data = to_device(images, "standardize", CPU, precision="fp32")
    own = images.x_train.float() / 255  # the subset's statistics standardize the pool
    mean, std = own.mean(dim=(0, 2, 3), keepdim=True), own.std(dim=(0, 2, 3), keepdim=True)
    result, network = trained_network(cfg, data)
    line = [f"{' '.join(overrides)}: running {100 * result.test_accuracy:.2f}"]
    for n in SIZES:
        accuracies = []
        for draw in range(DRAWS):
            pick = torch.randperm(len(pool_labels),
                                  generator=torch.Generator().manual_seed(100 + draw))[:n]
            x = ((pool[pick].float() / 255 - mean) / std).contiguous(
                memory_format=torch.channels_last)
            evaluate = Evaluation(network, x, pool_labels[pick], data.x_test, data.y_test,
                                  1000, False, exact=True)
            accuracies.append(100 * evaluate()[1].item() / len(data.y_test))
        line.append(f"n={n}: {np.mean(accuracies):.2f} ± {np.std(accuracies, ddof=1):.2f}")
    return " | ".join(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="one network's overrides (default: four)")
    args = parser.parse_args()
    full = load_images(compose_config(["budget=quick", "data.train_subset=null"]).data)
    for network in [args.overrides] if args.overrides else [[n] for n in NETWORKS]:
        print(measure(network, full.x_train, full.y_train), flush=True)


if __name__ == "__main__":
    main()
