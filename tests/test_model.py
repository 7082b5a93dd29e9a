import pytest
import torch

from study.design import levels
from study.model import build_model
from tests.conftest import compose

ALL_LEVELS = [(f, v) for f, vs in levels(compose("budget=full")).items() for v in vs
              if f in ("channels", "activation", "pooling", "dropout")]


@pytest.mark.parametrize(("factor", "level"), ALL_LEVELS)
def test_every_model_factor_level_builds_a_ten_way_classifier(factor: str, level) -> None:
    cfg = compose(f"model.{factor}={level}")
    model = build_model(cfg.model).eval()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


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
