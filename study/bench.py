"""How fast the study runs: `python -m study.bench` (writes results/bench.json).

On one device, with the same data and the baseline net, it measures training throughput
(images/s) of
  (a) the usual tutorial loop: a torchvision-style dataset of PIL images, CPU transforms, a
      DataLoader with 2 workers, fp32, batch 128, `loss.item()` every step;
  (b) the project's engine, one trial at a time, for each `train.compile` mode in bench.engines;
  (c) the engine in K concurrent worker processes that each train S trials at once on S CUDA
      streams (study.training.streams), for each K in bench.workers and S in bench.streams
      (aggregate);
and then (d) the wall time of `python -m study.sweep` on a slice of the default study (the
overrides in bench.study; [] is the whole study), from the command to the written report, run
with the K and S that were fastest in (c); and (e) how far apart the test accuracies are of the
trials in (b) and (c) that trained the same config with the same seed (determinism); and (f)
what testing after every epoch (a study's default: the intermediate values) costs, from (b)'s
trial of the fastest engine run again with a test after the last epoch only. (b) and (c)
count each trial's whole wall time: model set-up, graph capture and the test-set evaluation
included. Without a GPU it runs `bench=cpu`: small sizes, so that it ends in under 2 minutes; its
ratios say little about a GPU.

    python -m study.bench                                  # on a GPU machine
    python -m study.bench 'bench.workers=[1,2,4]' 'bench.streams=[1,2,4,8]' \
        'bench.engines=[none,graph,model]'
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from study.cli import run_app
from study.runs.benchmark import (
    LAST_ONLY,
    Throughput,
    bench_images,
    concurrent_throughput,
    engine_throughput,
    measure,
    repeatability,
    time_study_slice,
    tutorial_throughput,
)
from study.training.engine import device_name, pick_device

log = logging.getLogger("study.bench")


def table(report: dict) -> str:
    tutorial = report["throughput"][0]["images_per_s"]
    lines = [f"{'measurement':<40} {'images/s':>10} {'x tutorial':>10} {'test acc':>9}"]
    for row in report["throughput"]:
        accuracy = np.mean(row["test_accuracy"]) if row["test_accuracy"] else float("nan")
        ratio = row["images_per_s"] / tutorial
        lines.append(f"{row['label']:<40} {row['images_per_s']:>10.0f} {ratio:>10.1f} "
                     f"{accuracy:>9.3f}" + (f"  FAILED: {row['error']}" if row["error"] else ""))
    study = report.get("study")
    if study:
        lines.append(f"(d) study {' '.join(study['slice']) or '(the whole default study)'}: "
                     f"{study['wall_time_s']:.1f} s wall, "
                     f"{study.get('complete', 0)}/{study.get('trials', 0)} trials complete, "
                     f"baseline test accuracy {study.get('baseline_test_accuracy')}"
                     + (f"  FAILED: {study['error']}" if "error" in study else ""))
    cost = report.get("test_every_epoch_cost")
    if cost:
        lines.append(f"(f) testing after each of {cost['epochs']} epochs (compile="
                     f"{cost['engine']}): {cost['extra_s']:+.2f} s per trial, "
                     f"{100 * cost['fraction']:+.1f}% of a trial tested after the last only")
    for repeat in report.get("repeatability", []):
        lines.append(f"(e) compile={repeat['engine']}, seed {repeat['seed']} trained "
                     f"{len(repeat['test_accuracy'])} times in (b) and (c): test accuracy "
                     f"spread {repeat['spread']:.4f}")
    return "\n".join(lines)


def run_bench(cfg: DictConfig) -> None:
    device = pick_device()
    images = bench_images(cfg)
    output = Path(cfg.bench.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"device": device_name(device), "torch": torch.__version__,
              "cpu_count": os.cpu_count(), "data": images.source,
              "train_images": len(images.y_train), "bench": OmegaConf.to_container(cfg.bench),
              "throughput": []}

    def record(result: Throughput) -> Throughput:
        report["throughput"].append(asdict(result))
        output.write_text(json.dumps(report, indent=2))  # after each part: a kill keeps the rest
        return result

    tutorial_images = min(cfg.bench.tutorial_images, len(images.y_train) * 4)
    record(measure("(a) tutorial loop",
                   lambda: tutorial_throughput(cfg, images, device, tutorial_images)))
    for engine in cfg.bench.engines:
        record(measure(f"(b) engine, compile={engine}",
                       lambda e=engine: engine_throughput(cfg, images, device, e)))
    best_engine = "graph" if device.type == "cuda" and "graph" in cfg.bench.engines else "none"
    every = next((row for row in report["throughput"] if row["engine"] == best_engine), None)
    last_only = record(measure(f"(b) engine, compile={best_engine}{LAST_ONLY}",
                               lambda: engine_throughput(cfg, images, device, best_engine,
                                                         test_every_epoch=False)))
    if every and every["seconds"] and last_only.seconds:
        report["test_every_epoch_cost"] = {
            "engine": best_engine, "epochs": max(1, cfg.bench.images // len(images.y_train)),
            "extra_s": every["seconds"] - last_only.seconds,
            "fraction": every["seconds"] / last_only.seconds - 1}
    fastest, best = (1, 1), 0.0
    for count in cfg.bench.workers:
        for streams in cfg.bench.streams:
            result = record(measure(f"(c) {count} workers x {streams} streams",
                                    lambda k=count, s=streams:
                                    concurrent_throughput(cfg, k, s, best_engine)))
            if result.images_per_s > best:
                fastest, best = (count, streams), result.images_per_s
    report["study"] = time_study_slice(cfg, *fastest)
    tutorial = report["throughput"][0]["images_per_s"]
    report["repeatability"] = repeatability(report["throughput"])
    report["ratios_to_tutorial"] = {row["label"]: row["images_per_s"] / tutorial
                                    for row in report["throughput"][1:]}
    output.write_text(json.dumps(report, indent=2))
    print(f"{report['device']}, torch {report['torch']}, {report['data']} "
          f"({report['train_images']} training images)\n{table(report)}\nwritten: {output}")


def main() -> None:
    run_app(run_bench, "bench", cpu_defaults=("bench=cpu", "budget=quick"))


if __name__ == "__main__":
    main()
