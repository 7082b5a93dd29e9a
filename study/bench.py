"""How fast the study runs: `python -m study.bench` (writes results/bench.json and a table).

On one device, with the same data and the baseline net: (a) the usual tutorial loop, (b) the
engine per `train.compile` mode and `train.precision`, (c) K worker processes x S trials on
streams, (d) the wall time of a slice of the default study, (e) how far apart same-seed trials
land, (f) what testing after every epoch costs; each row with its GFLOP/s and the fraction of
the device's matmul rate. Without a GPU it runs `bench=cpu` (small sizes). What each row means
and the measured tables: docs/speed.md.

    python -m study.bench                                  # on a GPU machine
    python -m study.bench 'bench.workers=[1,2,4]' 'bench.streams=[1,2,4,8]'
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
    matmul_rates,
    measure,
    repeatability,
    time_study_slice,
    tutorial_throughput,
)
from study.training.engine import device_name, pick_device
from study.training.model import macs_per_image
from study.training.precision import resolve_precision

log = logging.getLogger("study.bench")


def table(report: dict) -> str:
    tutorial = report["throughput"][0]["images_per_s"]
    lines = [f"{'measurement':<52} {'images/s':>9} {'x tutorial':>10} {'GFLOP/s':>8} "
             f"{'of matmul':>9} {'test acc':>8}"]
    for row in report["throughput"]:
        accuracy = np.mean(row["test_accuracy"]) if row["test_accuracy"] else float("nan")
        lines.append(f"{row['label']:<52} {row['images_per_s']:>9.0f} "
                     f"{row['images_per_s'] / tutorial:>10.1f} {row['gflop_per_s']:>8.1f} "
                     f"{row['of_matmul']:>9.0%} {accuracy:>8.3f}"
                     + (f"  FAILED: {row['error']}" if row["error"] else ""))
    rates, sizes = report["matmul_gflop_per_s"], report["matmul_size"]
    lines.append("roofline: this device's matmul reaches " + " and ".join(
                 f"{rates[p]:.3g} GFLOP/s in {p} ({sizes[p]}x{sizes[p]})" for p in rates)
                 + f"; a training image costs {report['train_flop_per_image'] / 1e6:.0f} MFLOP "
                 "(3 x the forward pass's 2 x multiply-accumulates)")
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
                     f"{cost['engine']}, {cost['precision']}): {cost['extra_s']:+.2f} s per "
                     f"trial, {100 * cost['fraction']:+.1f}% of a trial tested after the last "
                     "only")
    for repeat in report.get("repeatability", []):
        lines.append(f"(e) compile={repeat['engine']}, {repeat['precision']}, seed "
                     f"{repeat['seed']} trained {len(repeat['test_accuracy'])} times in (b) and "
                     f"(c): test accuracy spread {repeat['spread']:.4f}")
    return "\n".join(lines)


def run_bench(cfg: DictConfig) -> None:
    device = pick_device()
    images = bench_images(cfg)
    output = Path(cfg.bench.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    roofline = matmul_rates(device)
    rates = {precision: rate for precision, (_, rate) in roofline.items()}
    flop = 6 * macs_per_image(cfg.model)  # forward 2 x MACs, backward twice the forward
    report = {"device": device_name(device), "torch": torch.__version__,
              "cpu_count": os.cpu_count(), "data": images.source,
              "train_images": len(images.y_train), "bench": OmegaConf.to_container(cfg.bench),
              "matmul_gflop_per_s": rates,
              "matmul_size": {precision: size for precision, (size, _) in roofline.items()},
              "train_flop_per_image": flop, "throughput": []}

    def record(result: Throughput) -> Throughput:
        row = asdict(result)
        row["gflop_per_s"] = result.images_per_s * flop / 1e9
        row["of_matmul"] = row["gflop_per_s"] / rates[result.precision]
        report["throughput"].append(row)
        output.write_text(json.dumps(report, indent=2))  # after each part: a kill keeps the rest
        return result

    tutorial_images = min(cfg.bench.tutorial_images, len(images.y_train) * 4)
    record(measure("(a) tutorial loop",
                   lambda: tutorial_throughput(cfg, images, device, tutorial_images)))
    precisions = list(dict.fromkeys(resolve_precision(p, device) for p in cfg.bench.precisions))
    engines = [record(measure(f"(b) engine, compile={engine}, {precision}",
                              lambda e=engine, p=precision:
                              engine_throughput(cfg, images, device, e, p)))
               for engine in cfg.bench.engines for precision in precisions]
    best = max((row for row in engines if row.error is None), default=None,
               key=lambda row: row.images_per_s)
    engine, precision = (best.engine, best.precision) if best else ("none", precisions[0])
    last_only = record(measure(f"(b) engine, compile={engine}, {precision}{LAST_ONLY}",
                               lambda: engine_throughput(cfg, images, device, engine, precision,
                                                         test_every_epoch=False)))
    if best and last_only.seconds:
        report["test_every_epoch_cost"] = {
            "engine": engine, "precision": precision,
            "epochs": max(1, cfg.bench.images // len(images.y_train)),
            "extra_s": best.seconds - last_only.seconds,
            "fraction": best.seconds / last_only.seconds - 1}
    fastest, top = (1, 1), 0.0
    for count in cfg.bench.workers:
        for streams in cfg.bench.streams:
            result = record(measure(f"(c) {count} workers x {streams} streams",
                                    lambda k=count, s=streams:
                                    concurrent_throughput(cfg, k, s, engine, precision)))
            if result.images_per_s > top:
                fastest, top = (count, streams), result.images_per_s
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
