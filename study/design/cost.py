"""What each design point of a fixed design costs to train, relative to the baseline point:
multiply-accumulates per image (study.training.model.macs_per_image) times epochs. The training
images are the same for every point and a batch size changes the steps, not the arithmetic, so
this is the ratio of trial times on a device that is kept busy.

The sweep enqueues the most expensive points first, so that a long trial does not start last and
keep one worker busy while the others idle; the report's design table shows the costs.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from study.design.designs import DESIGNS
from study.design.spec import StudySpec
from study.errors import UserError
from study.training.memory import available_bytes, training_bytes
from study.training.model import ARCHITECTURES, macs_per_image


def _model_config(spec: StudySpec, params: dict[str, Any]) -> dict[str, Any] | None:
    """The network a point trains, from the spec's setup and the point's factor values; None
    when the spec does not record every key its network needs (a spec from older code)."""
    model = {key.split(".", 1)[1]: value for key, value in spec.setup.items()
             if key.startswith("model.")}
    for name, factor in spec.factors.items():
        if factor.key.startswith("model."):
            model[factor.key.split(".", 1)[1]] = params.get(name, factor.baseline)
    arch = ARCHITECTURES.get(model.get("arch"))
    if arch is None or any(model.get(key) is None for key in arch.keys):
        return None
    return model


def point_costs(spec: StudySpec) -> dict[str, float]:
    """Design point id -> its cost relative to the baseline point (1.0); empty where the design
    has no fixed points or the spec cannot rebuild its networks."""
    if not spec.plan.fixed:
        return {}
    epochs = spec.setting("train.epochs")
    macs: dict[str, int] = {}
    work = {}
    for point in spec.points():
        model = _model_config(spec, point.params)
        if model is None or epochs is None:
            return {}
        key = repr(sorted(model.items()))
        if key not in macs:
            macs[key] = macs_per_image(OmegaConf.create(model))
        work[point.id] = macs[key] * point.params.get("epochs", epochs)
    base = work.get("baseline") or next(iter(work.values()), None)
    return {point: cost / base for point, cost in work.items()} if base else {}


def check_memory(spec: StudySpec, cfg: DictConfig, device: torch.device) -> None:
    """UserError when a network the study trains needs more memory to train than the device
    has (study.training.memory): before any trial. A fixed design's points are checked; a
    sampled design's (or a single job's) baseline and each factor's listed levels with the
    others at the baseline, which include the ends of every range a sampler draws from."""
    have = available_bytes(device)
    if have is None:
        return
    points = spec.points() if spec.plan.fixed else DESIGNS["ofat"].points(spec.factors)
    for point in points:
        model = _model_config(spec, point.params)
        batch = point.params.get("batch_size", spec.setting("train.batch_size") or
                                 cfg.train.batch_size)
        need = training_bytes(OmegaConf.create(model) if model else cfg.model, batch)
        if need > have:
            where = {"baseline": "the baseline"}.get(point.id, point.id) if (
                spec.plan.fixed or len(points) > 1) else "this run's network"
            raise UserError(f"{where} needs about {need / 2**30:,.1f} GiB to train (its "
                            f"weights, gradients and optimizer state, and a batch of {batch}'s "
                            f"layer outputs); this {device.type.upper()} has "
                            f"{have / 2**30:,.1f} GiB available: choose smaller levels")
