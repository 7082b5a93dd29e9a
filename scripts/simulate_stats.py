"""Seeded simulations of the statistics (study.stats) behind docs/statistics.md's tables, on the
shipped OFAT design (conf/sweep/ofat.yaml: seven factors, 24 design points besides the baseline,
the cost model's order of the looks) under four kinds of seed noise (study.stats.synthetic:
Gaussian; lr=0.5 and sigmoid three times as noisy; t(3); one seed in ten losing 5 points), at
the full budget's design (3 seeds per point, 6 at the baseline), the quick budget's (1 + 6), and
each adding seeds until decided (the default looks; at most 2x the full design's trials, and
the 100 trials a 2-core CPU trains in the quick budget's minutes). The suite runs small
versions of these (tests/stats/test_simulations.py); this runs the large ones:

    python -m scripts.simulate_stats --errors             # null studies: claims, coverage, order
    python -m scripts.simulate_stats --power              # the planted truth (PLANTED)
    python -m scripts.simulate_stats --errors --design "3 + 6" --studies 200   # one design
    python -m scripts.simulate_stats --power --design "3 + 6" --prior-df-cap 4  # another cap
    python -m scripts.simulate_stats --reports 500        # random studies through the report
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from omegaconf import OmegaConf
from statsmodels.stats.proportion import proportion_confint

from study import api
from study.cli import compose_config
from study.design.config import SweepConfig
from study.reporting.document import markdown_table
from study.stats import variance
from study.stats.ranking import Analysis, rank_trials
from study.stats.synthetic import (
    BASE,
    LOST_POINTS,
    LOST_SHARE,
    NOISE_CASES,
    NOISY_POINTS,
    SHAPES,
    ofat_spec,
    ofat_table,
    random_table,
    replicated_until_decided,
    seed_noise,
    study_from_table,
)

# the shipped design's non-baseline levels, as the apps compose its config
SHIPPED = {factor: [v for v in values if v != BASE[factor]] for factor, values in
           OmegaConf.to_container(compose_config(["sweep=ofat"]).sweep.levels).items()}
SPEC = ofat_spec(SHIPPED)
# the planted truth (accuracy): two learning rates, sigmoid, few kernels, a large batch
PLANTED = {"lr=0.5": -0.03, "lr=0.001": -0.02, "activation=sigmoid": -0.05,
           "channels=16": -0.015, "batch_size=512": 0.01}
EFFECT_CLAIMS = ("influential", "small")  # claims that a factor's accuracy differs
NOISY_FACTORS = {point.split("=")[0] for point in NOISY_POINTS}
SIGMAS = (0.005, 0.01, 0.023)  # seed std, accuracy: the budgets' measured range
FULL_TRIALS = len(SPEC.points()) * 3 + 3  # 24 points x 3 seeds + the baseline x 6
# design -> (seeds per point, baseline seeds, looks (0: fixed), most trials)
DESIGNS = {"3 + 6": (3, 6, 0, None), "1 + 6": (1, 6, 0, None),
           "3 + 6 until decided": (3, 6, SweepConfig().looks, 2 * FULL_TRIALS),
           "1 + 6 until decided": (1, 6, SweepConfig().looks, 100)}


def simulate(design: str, shifts: dict[str, float], case: str, sigma: float,
             rng: np.random.Generator) -> tuple[Analysis, list[Analysis], int]:
    """One simulated study of this design: the analysis it stops at, every look's, and its
    trials."""
    seeds, baseline_seeds, looks, most = DESIGNS[design]
    if not looks:
        table = seed_noise(ofat_table(shifts, noise=0.0, seeds=seeds, levels=SHIPPED,
                                      baseline_seeds=baseline_seeds), case, sigma, rng)
        analysis = rank_trials(table, SPEC, advise=False)
        return analysis, [analysis], len(table)
    seen: list[Analysis] = []
    analysis, spec = replicated_until_decided(shifts, SHIPPED, seeds, baseline_seeds, looks,
                                              case, sigma, rng, max_trials=most,
                                              on_look=seen.append)
    return analysis, seen, spec.total_trials()


def rate(hits: list[bool]) -> str:
    """A rate with its 95% Wilson interval; n/a of nothing."""
    if not hits:
        return "n/a"
    low, high = proportion_confint(sum(hits), len(hits), alpha=0.05, method="wilson")
    return f"{np.mean(hits):.3f} [{low:.3f}, {high:.3f}]"


def _point(factor: str, level: object, baseline: bool) -> str:
    return "baseline" if baseline else f"{factor}={level}"


def error_row(scenario: tuple[str, str, float, int]) -> dict:
    """Null studies (no factor has an effect) of one (design, noise case, sigma, studies),
    seeded by the scenario: how often a factor is claimed to differ at the look the study
    stops at and at any look (the peeking adversary), how often each design point's 95%
    level-mean interval covers its mean (the worst point's rate, and the noisy points'), how
    often a factor's simultaneous intervals all cover zero (judged by the levels' own noise,
    and screened under the pooled noise), and how often a noisy factor ranks first."""
    design, case, sigma, studies = scenario
    rng = np.random.default_rng([4201, list(DESIGNS).index(design), NOISE_CASES.index(case),
                                 int(1000 * sigma)])
    stop, anywhere, first, trials = [], [], [], []
    # every point's expected accuracy: a lost seed in ten moves it too
    mean = 0.7 - (LOST_SHARE * LOST_POINTS if case == "lost" else 0.0)
    covered: dict[str, list[bool]] = {}
    own, screened = [], []
    for _ in range(studies):
        analysis, looks, count = simulate(design, {}, case, sigma, rng)
        stop.append(analysis.ranking["verdict"].isin(EFFECT_CLAIMS).any())
        anywhere.append(any(a.ranking["verdict"].isin(EFFECT_CLAIMS).any() for a in looks))
        top = analysis.ranking[analysis.ranking["rank"] == 1]["factor"]
        first.append(bool(set(top) & NOISY_FACTORS))
        trials.append(count)
        levels = analysis.levels.dropna(subset=["ci_low"]).drop_duplicates(
            ["factor", "level"])
        # every factor's slice holds the baseline point: counted once, from one of them
        for row in levels[~levels["baseline"] | (levels["factor"] == "lr")].itertuples():
            covered.setdefault(_point(row.factor, row.level, row.baseline), []).append(
                row.ci_low <= mean <= row.ci_high)
        diffs = analysis.differences.dropna(subset=["ci_low"])
        each = ((diffs["ci_low"] <= 0) & (diffs["ci_high"] >= 0)).groupby(diffs["factor"]).all()
        for factor, fine in each.items():
            claimable = analysis.model.factors[factor].claimable.any()
            (own if claimable else screened).append(bool(fine))
    rates = {point: np.mean(hits) for point, hits in covered.items()}
    worst = min(rates, key=rates.get) if rates else None
    noisy = [hit for point in NOISY_POINTS for hit in covered.get(point, [])]
    row = {"design": design, "noise": case, "sigma (points)": f"{100 * sigma:g}",
           "any claim (at the stop)": rate(stop), "any claim (at any look)": rate(anywhere),
           "level-mean coverage: worst point": (f"{worst}: {rate(covered[worst])}" if worst
                                                else "n/a"),
           "noisy points": rate(noisy),
           "differences' coverage (own noise)": rate(own),
           "(pooled screening)": rate(screened),
           "noisy factor ranked first": rate(first),
           "trials (mean)": f"{np.mean(trials):.0f}"}
    print(row, flush=True)
    return row


def power_row(scenario: tuple[str, str, int]) -> dict:
    """Studies of the PLANTED truth at sigma 1 point of one (design, noise case, studies):
    how often each planted factor is shown influential at the stop, and what it cost."""
    design, case, studies = scenario
    rng = np.random.default_rng([4202, list(DESIGNS).index(design), NOISE_CASES.index(case)])
    found: dict[str, list[bool]] = {"activation": [], "lr": [], "channels": [],
                                    "batch_size": []}
    wrong, trials = [], []
    for _ in range(studies):
        analysis, _, count = simulate(design, PLANTED, case, 0.01, rng)
        verdicts = analysis.ranking.set_index("factor")["verdict"]
        for factor, hits in found.items():
            hits.append(verdicts[factor] == "influential")
        wrong.append(verdicts.drop(list(found)).isin(EFFECT_CLAIMS).any())
        trials.append(count)
    row = {"design": design, "noise": case,
           **{f"{factor} influential": rate(hits) for factor, hits in found.items()},
           "a null factor claimed": rate(wrong), "trials (mean)": f"{np.mean(trials):.0f}",
           "trials (max)": max(trials)}
    print(row, flush=True)
    return row


def _pool(function, scenarios: list, processes: int) -> pd.DataFrame:
    with multiprocessing.Pool(processes) as pool:
        return pd.DataFrame(pool.map(function, scenarios, chunksize=1))


def reports(count: int) -> None:
    """Random study tables (as the report's property test draws them) through write_report."""
    rng = np.random.default_rng(500)
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        for i in range(count):
            shape = str(rng.choice(list(SHAPES)))
            table = random_table(shape, int(rng.integers(1, 4)),
                                 float(rng.choice([0, 0.005, 0.05])),
                                 float(rng.choice([0, 0.03])), float(rng.choice([0, 0.2, 1.0])),
                                 float(rng.choice([0, 0.3, 1.0])), int(rng.integers(0, 2 ** 16)))
            storage = optuna.storages.InMemoryStorage()
            study_from_table(table, SHAPES[shape], f"s{i}", storage=storage)
            out = api.write_report(api.load(f"s{i}", storage), Path(folder)).folder
            shutil.rmtree(out)  # keep the disk small
            if (i + 1) % 50 == 0:
                print(f"{i + 1} reports written ({time.time() - started:.0f} s)", flush=True)
    print(f"{count} random studies through write_report without an exception "
          f"({time.time() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200, help="per row")
    parser.add_argument("--errors", action="store_true", help="null studies (every design)")
    parser.add_argument("--power", action="store_true", help="the planted truth, sigma 1 point")
    parser.add_argument("--design", action="append", choices=list(DESIGNS),
                        help="only this design (repeatable; default: all)")
    parser.add_argument("--noise", action="append", choices=list(NOISE_CASES),
                        help="only this noise case (repeatable; default: all)")
    parser.add_argument("--sigma", action="append", type=float,
                        help="only this seed std in points (repeatable; default: 0.5, 1, 2.3)")
    parser.add_argument("--prior-df-cap", type=float,
                        help="the variance moderation's cap (study.stats.variance), to compare")
    parser.add_argument("--reports", type=int, default=0, help="studies through write_report")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    if args.prior_df_cap is not None:  # read at every fit, in the forked processes too
        variance.PRIOR_DF_CAP = args.prior_df_cap
    designs, cases = args.design or list(DESIGNS), args.noise or list(NOISE_CASES)
    sigmas = [s / 100 for s in args.sigma] if args.sigma else list(SIGMAS)
    if args.errors:
        print(markdown_table(_pool(error_row, [(d, c, s, args.studies) for d in designs
                                               for c in cases for s in sigmas],
                                   args.processes)))
    if args.power:
        print(markdown_table(_pool(power_row, [(d, c, args.studies) for d in designs
                                               for c in cases], args.processes)))
    if args.reports:
        reports(args.reports)


if __name__ == "__main__":
    main()
