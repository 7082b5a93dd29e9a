import pytest
import torch

from study.design.factors import FACTORS
from study.training.model import build_model
from tests.conftest import compose, spec_of


def levels(cfg) -> dict[str, list]:
    return {name: factor.levels for name, factor in spec_of(cfg).factors.items()}


MODEL_FACTORS = [name for name, f in FACTORS.items() if f.key.startswith("model.")]
ALL_LEVELS = [(f, v) for f, vs in levels(compose("budget=full", "sweep=article")).items()
              for v in vs if f in MODEL_FACTORS]


@pytest.mark.slow
@pytest.mark.parametrize(("factor", "level"), ALL_LEVELS)
def test_every_model_factor_level_builds_a_ten_way_classifier(factor: str, level) -> None:
    cfg = compose(f"{FACTORS[factor].key}={level}")
    model = build_model(cfg.model).eval()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_factor_levels_change_the_network() -> None:
    def layer_types(*overrides: str) -> list[str]:
        return [type(m).__name__ for m in build_model(compose(*overrides).model)]

    assert "MaxPool2d" in layer_types() and "AvgPool2d" in layer_types("model.pooling=avg")
    stride = build_model(compose("model.pooling=stride").model)
    assert not any("Pool" in type(m).__name__ for m in stride)
    assert sum(getattr(m, "stride", None) == (2, 2) for m in stride) == 3  # one per stage
    assert "GELU" in layer_types("model.activation=gelu")
    wide = build_model(compose("model.channels=64").model)
    assert max(m.out_channels for m in wide if isinstance(m, torch.nn.Conv2d)) == 256
    dropout = [m for m in build_model(compose("model.dropout=0.25").model)
               if isinstance(m, torch.nn.Dropout)]
    assert [d.p for d in dropout] == [0.25]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lenet5", "alexnet"])
def test_textbook_networks_build_for_every_factor_level_they_have(arch: str) -> None:
    chosen = [f"model={arch}", *(["~sweep.levels.dropout"] if arch == "lenet5" else [])]
    model_levels = {f: vs for f, vs in levels(compose(*chosen)).items() if f in MODEL_FACTORS}
    assert ("dropout" in model_levels) == (arch == "alexnet")
    assert ("normalization" in model_levels) == (arch == "alexnet")
    for factor, values in (model_levels | {"normalization": ["batch", "none", "group", "layer"]}
                           if arch == "alexnet" else model_levels).items():
        for value in values:
            cfg = compose(*chosen, f"{FACTORS[factor].key}={value}")
            logits = build_model(cfg.model).eval()(torch.randn(2, 3, 32, 32))
            assert logits.shape == (2, 10) and torch.isfinite(logits).all(), (factor, value)


def test_lenet5_has_the_papers_layers() -> None:
    model = build_model(compose("model=lenet5", "~sweep.levels.dropout").model)
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(6, (5, 5)), (16, (5, 5)),
                                                                 (120, (5, 5))]
    assert [(m.in_features, m.out_features) for m in model if isinstance(m, torch.nn.Linear)] == \
        [(120, 84), (84, 10)]
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in model) == 2
    assert sum(isinstance(m, torch.nn.Tanh) for m in model) == 4
    assert not any(isinstance(m, (torch.nn.Dropout, torch.nn.BatchNorm2d)) for m in model)


def test_alexnet_has_five_convs_overlapping_pooling_and_three_fc_layers() -> None:
    model = build_model(compose("model=alexnet").model)
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 192, 384, 256, 256]
    pools = [m for m in model if isinstance(m, torch.nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3  # overlapping
    assert sum(isinstance(m, torch.nn.Linear) for m in model) == 3
    assert [m.p for m in model if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]
