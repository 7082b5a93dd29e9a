from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from study.design.factors import FACTORS
from tests.conftest import compose, spec_of


def test_ofat_expands_to_the_textbook_design() -> None:
    spec = spec_of(compose("budget=full"))
    points = spec.points()
    assert len(points) == 25 and spec.seeds == [0, 1, 2] and spec.total_trials() == 24 * 3 + 6
    assert spec.point_seeds("baseline") == [0, 1, 2, 3, 4, 5]
    assert len({p.id for p in points}) == 25
    base = spec.baseline
    assert points[0].id == "baseline" and points[0].params == base
    for point in points[1:]:
        changed = [f for f in FACTORS if point.params[f] != base[f]]
        assert len(changed) == 1 and point.id == f"{changed[0]}={point.params[changed[0]]}"
    per_factor = {f: sum(p.id.startswith(f"{f}=") for p in points) for f in spec.varied}
    assert per_factor == {"channels": 3, "activation": 5, "pooling": 2, "dropout": 3,
                          "preprocessing": 3, "batch_size": 4, "lr": 4}


def test_grid_is_the_full_factorial_of_listed_factors() -> None:
    spec = spec_of(compose("sweep=grid", "+sweep.levels.activation=[relu,tanh]"))
    points = spec.points()
    assert len(points) == 3 * 3 * 2 and spec.varied == ["lr", "batch_size", "activation"]
    assert len({tuple(sorted(p.params.items())) for p in points}) == 18
    assert all(p.params["pooling"] == "max" for p in points)
    assert points[0].id == "lr=0.01,batch_size=64,activation=relu"
    assert spec.baseline_seeds == [] and spec.total_trials() == 18 * len(spec.seeds)  # no baseline
    grown = spec.grow(spec_of(compose("sweep=grid", "+sweep.levels.activation=[relu,tanh]",
                                      "sweep.seeds=2")), "g", "sqlite://")
    assert grown.baseline_seeds == [] and list(grown.history[-1]) == ["at", "code", "seeds"]


def test_distributions_have_the_factors_real_types() -> None:
    space = spec_of(compose()).distributions()
    assert isinstance(space["activation"], CategoricalDistribution)
    assert isinstance(space["preprocessing"], CategoricalDistribution)
    assert isinstance(space["channels"], IntDistribution) and space["channels"].log
    assert (space["batch_size"].low, space["batch_size"].high) == (32, 512)
    assert isinstance(space["lr"], FloatDistribution) and space["lr"].log
    assert isinstance(space["dropout"], FloatDistribution) and not space["dropout"].log


def test_fixed_designs_record_every_choice_and_samplers_only_their_levels() -> None:
    """A fixed design may grow levels later, and Optuna refuses changed categorical choices; a
    sampler must draw from the design's levels only."""
    levels = "sweep.levels.activation=[relu,tanh]"
    fixed = spec_of(compose(levels)).distributions()["activation"]
    sampled = spec_of(compose("sweep=optuna", levels)).distributions()["activation"]
    assert fixed.choices == FACTORS["activation"].choices
    assert sampled.choices == ("relu", "tanh")


def test_trial_config_sets_each_factor_key_and_the_seed() -> None:
    cfg = compose()
    trial_cfg = spec_of(cfg).trial_config(cfg, {"activation": "tanh", "lr": 0.1,
                                                "batch_size": 64}, seed=5)
    assert (trial_cfg.model.activation, trial_cfg.train.lr, trial_cfg.train.batch_size,
            trial_cfg.train.seed) == ("tanh", 0.1, 64, 5)
    assert cfg.model.activation == "relu"  # the study's config is untouched


def test_levels_take_their_factor_type() -> None:
    spec = spec_of(compose("sweep.levels.dropout=[0,0.5]"))
    assert spec.factors["dropout"].levels == [0.0, 0.5]
    assert all(isinstance(v, float) for v in spec.factors["dropout"].levels)
