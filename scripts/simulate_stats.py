"""Seeded simulations of the statistics (study.stats) behind docs/statistics.md's tables:
false-positive rate, interval coverage, power and the textbook table's caution, on synthetic
OFAT studies shaped like the default (seven factors, 2-4 levels; channels here at six levels)
with Gaussian seed noise. The suite runs small versions of these (tests/stats/test_ranking.py);
this runs the large ones:

    python -m scripts.simulate_stats                    # the first table (about 10 min, 2 cores)
    python -m scripts.simulate_stats --replicated       # one seed per point, six at the baseline
    python -m scripts.simulate_stats --noise            # null studies under real seed noise
    python -m scripts.simulate_stats --advice           # does the advised number of seeds decide?
    python -m scripts.simulate_stats --adaptive         # studies that add seeds until decided
    python -m scripts.simulate_stats --planted --studies 100 --max-trials 3000  # vs fixed seeds
    python -m scripts.simulate_stats --reports 500      # and 500 random studies through the report
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from study import api
from study.design.config import SweepConfig
from study.design.spec import StudySpec
from study.reporting.document import markdown_table
from study.reporting.sections import claim_table
from study.stats.advice import MAX_SEEDS, advised_plan
from study.stats.frames import StudyData
from study.stats.ranking import Analysis
from study.stats.synthetic import (
    LEVELS,
    NOISE_CASES,
    SHAPES,
    ofat_spec,
    ofat_table,
    random_table,
    replicated_until_decided,
    seed_noise,
    study_from_table,
)

NO_CURVES = pd.DataFrame()  # simulated studies record no per-epoch test accuracy
SIX_LEVELS = LEVELS | {"channels": [8, 16, 64, 128, 256]}
SIX_SPEC = ofat_spec(SIX_LEVELS)
CLAIMS = ("influential", "small")


EQUAL = ((2, 2), (3, 3), (5, 5), (10, 10))  # (seeds, baseline seeds): the docs' first table
REPLICATED = ((1, 6), (3, 3), (3, 6))  # the quick budget's design, and the full budget's


def null_row(sigma: float, seeds: int, baseline_seeds: int, studies: int,
             rng: np.random.Generator) -> dict:
    claims, covered, cannot, negligible, first = [], [], [], [], []
    for _ in range(studies):
        table = ofat_table({}, noise=sigma, seeds=seeds, rng=rng, levels=SIX_LEVELS,
                           baseline_seeds=baseline_seeds)
        result = api.rank(StudyData("simulated", SIX_SPEC, table, NO_CURVES))
        ranking, diffs = result.ranking, result.differences
        claims.append(ranking["verdict"].isin(CLAIMS).any())
        covered += list((diffs["ci_low"] <= 0) & (diffs["ci_high"] >= 0))
        cannot += list(claim_table(ranking)["agreement"].str.startswith("cannot tell"))
        negligible += list(ranking["verdict"] == "negligible")
        first.append(ranking.iloc[0]["factor"])
    first = pd.Series(first)
    return {"any claim (null)": np.mean(claims), "coverage": np.mean(covered),
            "textbook: cannot tell (null)": np.mean(cannot),
            "negligible (null)": np.mean(negligible),
            "rank 1: channels (6 levels)": (first == "channels").mean(),
            "rank 1: activation (3 levels)": (first == "activation").mean()}


def power(sigma: float, seeds: int, baseline_seeds: int, studies: int, effect: float,
          rng: np.random.Generator) -> float:
    hits = []
    for _ in range(studies):
        table = ofat_table({"lr": -effect}, noise=sigma, seeds=seeds, rng=rng, levels=SIX_LEVELS,
                           baseline_seeds=baseline_seeds)
        ranking = api.rank(StudyData("simulated", SIX_SPEC, table, NO_CURVES)).ranking.set_index(
            "factor")
        hits.append(ranking.loc["lr", "verdict"] == "influential")
    return float(np.mean(hits))


def table(studies: int, designs: tuple[tuple[int, int], ...]) -> pd.DataFrame:
    rng = np.random.default_rng(2026)
    rows = []
    for sigma in (0.005, 0.01):
        for seeds, baseline_seeds in designs:
            row = {"sigma (points)": 100 * sigma, "seeds": seeds,
                   "baseline seeds": baseline_seeds,
                   **null_row(sigma, seeds, baseline_seeds, studies, rng)}
            for effect in (0.02, 0.03):
                row[f"power: {100 * effect:.0f}-point lr effect"] = power(
                    sigma, seeds, baseline_seeds, studies, effect, rng)
            rows.append(row)
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def rate(hits: list[bool]) -> str:
    """A rate with its 95% Wilson interval; n/a of nothing."""
    if not hits:
        return "n/a"
    low, high = proportion_confint(sum(hits), len(hits), alpha=0.05, method="wilson")
    return f"{np.mean(hits):.3f} [{low:.3f}, {high:.3f}]"


def noisy_study(shifts: dict[str, float], seeds: int, baseline_seeds: int, case: str,
                sigma: float, rng: np.random.Generator) -> Analysis:
    """A simulated OFAT study (SIX_LEVELS) with these shifts and seed noise of this case
    (study.stats.synthetic.seed_noise), analysed as the report does."""
    table = seed_noise(ofat_table(shifts, noise=0.0, seeds=seeds, levels=SIX_LEVELS,
                                  baseline_seeds=baseline_seeds), case, sigma, rng)
    return api.rank(StudyData("simulated", SIX_SPEC, table, NO_CURVES))


def noise_table(studies: int) -> pd.DataFrame:
    """Null studies (no factor has an effect) under each seed-noise case of
    study.stats.synthetic.seed_noise, at the quick design (1 + 6 seeds) and at 3 + 6, and (under
    Gaussian noise) as many with a 3-point learning-rate effect: how often it is confirmed
    (influential), and screened."""
    rng, rows = np.random.default_rng(2611), []
    for seeds, baseline_seeds in ((1, 6), (3, 6)):
        for sigma in (0.005, 0.01, 0.023):
            for case in NOISE_CASES:
                claims, screened, covered = [], [], []
                for _ in range(studies):
                    result = noisy_study({}, seeds, baseline_seeds, case, sigma, rng)
                    verdicts = result.ranking["verdict"]
                    claims.append(verdicts.isin(CLAIMS).any())
                    screened.append(result.ranking["reason"].str.startswith(
                        ("looks influential", "looks small")).any())
                    own = [f for f, fit in result.model.factors.items() if fit.own_variance]
                    diffs = result.differences[result.differences["factor"].isin(own)]
                    each = (diffs["ci_low"] <= 0) & (diffs["ci_high"] >= 0)
                    covered += list(each.groupby(diffs["factor"]).all())
                found, flagged = [], []  # both other lr levels 3 points down
                for _ in range(studies if case == "gaussian" else 0):
                    ranking = noisy_study({"lr": -0.03}, seeds, baseline_seeds, case, sigma,
                                          rng).ranking.set_index("factor")
                    lr = ranking.loc["lr", "verdict"]
                    found.append(lr == "influential")
                    flagged.append(lr == "screened")
                rows.append({"seeds": seeds, "baseline seeds": baseline_seeds,
                             "sigma (points)": f"{100 * sigma:g}", "noise": case,
                             "any claim (null)": rate(claims),
                             "per-factor coverage": rate(covered),
                             "screened as an effect (null)": rate(screened),
                             "3-point lr effect: influential": rate(found),
                             "screened": rate(flagged)})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


ADVICE = re.compile(r"about \d+ seeds per design point(?: at its levels [^,]+, at least \d+ at "
                    r"the others,)? would (?:decide|confirm) it")
ADVICE_TRUTHS = {"null": {}, "lr -3 points": {"lr": -0.03}}  # both other lr levels 3 points down


def study_with_seeds(shifts: dict[str, float], seeds: dict[str, int], case: str, sigma: float,
                     rng: np.random.Generator, spec: StudySpec = SIX_SPEC) -> Analysis:
    """`noisy_study` with these seeds per design point (seeds: point -> how many), analysed
    under `spec` (its looks set the error rate)."""
    table = ofat_table(shifts, noise=0.0, seeds=max(seeds.values()), levels=SIX_LEVELS,
                       baseline_seeds=max(seeds.values()))
    table = table[table["seed"] < table["design_point"].map(seeds)]
    return api.rank(StudyData("simulated", spec, seed_noise(table, case, sigma, rng),
                              NO_CURVES))


# (seeds per point, baseline seeds, looks): the quick design fixed, the full one, and the quick
# budget as shipped (adding seeds until decided, the default looks, at most --max-trials trials)
ADVICE_DESIGNS = {"1 + 6": (1, 6, 0), "3 + 6": (3, 6, 0),
                  "1 + 6 until decided": (1, 6, SweepConfig().looks)}


def first_study(design: str, shifts: dict[str, float], case: str, sigma: float,
                max_trials: int, rng: np.random.Generator
                ) -> tuple[Analysis, dict[str, int], StudySpec]:
    """The study whose advice is tested: its analysis, its seeds per design point, and the spec
    a study at more seeds is analysed under (the same error rate as the advice's)."""
    seeds, baseline_seeds, looks = ADVICE_DESIGNS[design]
    if not looks:
        return (noisy_study(shifts, seeds, baseline_seeds, case, sigma, rng),
                {p.id: baseline_seeds if p.id == "baseline" else seeds
                 for p in SIX_SPEC.points()}, SIX_SPEC)
    analysis, spec = replicated_until_decided(shifts, SIX_LEVELS, seeds, baseline_seeds, looks,
                                              case, sigma, rng, max_trials=max_trials)
    return (analysis, {p.id: len(spec.point_seeds(p.id)) for p in SIX_SPEC.points()},
            replace(SIX_SPEC, looks=looks))


def advice_row(scenario: tuple[str, float, str, str, int, int]) -> dict:
    """One scenario of `advice_table`: (design, sigma, noise case, truth, studies, max trials),
    seeded by the scenario."""
    design, sigma, case, truth, studies, max_trials = scenario
    shifts = ADVICE_TRUTHS[truth]
    rng = np.random.default_rng([1201, list(ADVICE_DESIGNS).index(design), int(1000 * sigma),
                                 NOISE_CASES.index(case), list(ADVICE_TRUTHS).index(truth)])
    decided, advised, beyond = [], [], 0
    for _ in range(studies):
        first, seeds, spec = first_study(design, shifts, case, sigma, max_trials, rng)
        reasons = first.ranking.set_index("factor")["reason"]
        beyond += int(reasons.str.contains("seeds per design point would be needed").sum())
        for factor in reasons.index[reasons.str.contains(ADVICE)]:
            plan = advised_plan(first.model.factors[factor], first.practical_effect,
                                first.model.alpha)
            again = study_with_seeds(shifts, seeds | plan.cells, case, sigma, rng, spec)
            decided.append(again.ranking.set_index("factor").loc[factor, "verdict"] in (
                "influential", "small", "negligible"))
            advised.append(plan.seeds)
    capped = f" (at most {max_trials} trials)" if ADVICE_DESIGNS[design][2] else ""
    row = {"design": design + capped, "sigma (points)": f"{100 * sigma:g}",
           "noise": case, "truth": truth, "factors advised": len(advised),
           "median seeds advised": f"{np.median(advised):g}" if advised else "n/a",
           f"more than {MAX_SEEDS} needed": beyond,
           "decided at the advised seeds": rate(decided)}
    print(row, flush=True)
    return row


def advice_table(studies: int, processes: int, max_trials: int,
                 designs: list[str]) -> pd.DataFrame:
    """The advice's calibration: studies of each noise case (null, and a 3-point loss at both
    other lr levels) of each of these ADVICE_DESIGNS; each factor left undetermined or screened
    with a number of seeds per point is re-simulated from the same truth with that many (every
    point keeping its seeds where that is more), and counted decided when its verdict there is a
    claim (influential, small, negligible). The scenarios run in `processes` processes."""
    scenarios = [(design, sigma, case, truth, studies, max_trials) for design in designs
                 for sigma in (0.005, 0.01, 0.023) for case in NOISE_CASES
                 for truth in ADVICE_TRUTHS]
    with multiprocessing.Pool(processes) as pool:
        return pd.DataFrame(pool.map(advice_row, scenarios, chunksize=1))


ADAPTIVE_TRUTHS = {"null": {}, "planted": {"lr=0.1": -0.03, "channels=16": 0.015}}


def adaptive_row(scenario: tuple[float, str, str, int, int]) -> dict:
    """One scenario of `adaptive_table`: (sigma, noise case, truth, studies, max trials),
    seeded by the scenario."""
    sigma, case, truth, studies, max_trials = scenario
    rng = np.random.default_rng([2612, int(1000 * sigma), NOISE_CASES.index(case),
                                 list(ADAPTIVE_TRUTHS).index(truth)])
    claims, decided, looks, trials, covered = [], [], [], [], []
    for _ in range(studies):
        result, spec = replicated_until_decided(ADAPTIVE_TRUTHS[truth], SIX_LEVELS, 1, 6,
                                                SweepConfig().looks, case, sigma, rng,
                                                max_trials=max_trials)
        ranking = result.ranking.set_index("factor")
        wrong = ([f for f in ranking.index if f not in ("lr", "channels")] if truth == "planted"
                 else list(ranking.index))
        claims.append(ranking.loc[wrong, "verdict"].isin(CLAIMS).any())
        own = [f for f in wrong if result.model.factors[f].own_variance]
        diffs = result.differences[result.differences["factor"].isin(own)]
        each = (diffs["ci_low"] <= 0) & (diffs["ci_high"] >= 0)
        covered += list(each.groupby(diffs["factor"]).all())
        decided.append(ranking["verdict"].isin(("influential", "small", "negligible")).all())
        looks.append(len(spec.look_log))
        trials.append(spec.total_trials())
    row = {"sigma (points)": f"{100 * sigma:g}", "noise": case, "truth": truth,
           "any claim of a null factor": rate(claims),
           "per-factor coverage (null factors)": rate(covered),
           "every factor decided": rate(decided),
           "looks (mean)": f"{np.mean(looks):.2f}", "trials (mean)": f"{np.mean(trials):.0f}",
           "trials (max)": max(trials)}
    print(row, flush=True)
    return row


def adaptive_table(studies: int, processes: int, max_trials: int) -> pd.DataFrame:
    """Studies that add seeds until decided (study.stats.synthetic.replicated_until_decided:
    the quick design, 1 + 6 seeds, the default looks, at most `max_trials` trials) under each noise
    case: null, and planted (lr -3 points at 0.1, channels +1.5 points at 16): how often a null
    factor gets a claim at the look the study stops at, how often a null factor judged by its
    own noise has every simultaneous interval cover zero, how often every factor is decided,
    and what it cost."""
    scenarios = [(sigma, case, truth, studies, max_trials) for sigma in (0.005, 0.01, 0.023)
                 for case in NOISE_CASES for truth in ADAPTIVE_TRUTHS
                 if truth == "null" or case == "gaussian"]
    with multiprocessing.Pool(processes) as pool:
        return pd.DataFrame(pool.map(adaptive_row, scenarios, chunksize=1))


def planted_row(scenario: tuple[int, int, int, int]) -> dict:
    """One design of `planted_comparison`: (looks, fixed seeds, studies, max trials), looks 0
    for the fixed design; seeded by the design."""
    looks, seeds, studies, max_trials = scenario
    rng, shifts = np.random.default_rng([2613, looks, seeds]), ADAPTIVE_TRUTHS["planted"]
    decided, trials = [], []
    for _ in range(studies):
        if looks:
            result, spec = replicated_until_decided(shifts, SIX_LEVELS, 1, 6, looks, "gaussian",
                                                    0.01, rng, max_trials=max_trials)
            trials.append(spec.total_trials())
        else:
            result = noisy_study(shifts, seeds, max(seeds, 6), "gaussian", 0.01, rng)
            trials.append((len(SIX_SPEC.points()) - 1) * seeds + max(seeds, 6))
        decided.append(result.ranking["verdict"].isin(("influential", "small",
                                                       "negligible")).all())
    design = (f"until decided ({looks} looks, at most {max_trials} trials)" if looks
              else f"{seeds} seeds per point")
    row = {"design": design, "every factor decided": rate(decided),
           "trials (mean)": f"{np.mean(trials):.0f}"}
    print(row, flush=True)
    return row


def planted_comparison(studies: int, looks: tuple[int, ...], fixed_seeds: tuple[int, ...],
                       max_trials: int, processes: int) -> pd.DataFrame:
    """The planted study (ADAPTIVE_TRUTHS, Gaussian noise, sigma 1 point) decided by adding
    seeds until decided (each number of looks, one seed per point and six at the baseline to
    start, at most `max_trials` trials) and with each fixed number of seeds per point (the
    baseline at least six): how often every factor is decided, and at how many trials. The
    designs run in `processes` processes."""
    scenarios = ([(n, 0, studies, max_trials) for n in looks]
                 + [(0, seeds, studies, max_trials) for seeds in fixed_seeds])
    with multiprocessing.Pool(processes) as pool:
        return pd.DataFrame(pool.map(planted_row, scenarios, chunksize=1))


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
    parser.add_argument("--studies", type=int, default=200, help="per cell of the table")
    parser.add_argument("--reports", type=int, default=0, help="studies through write_report")
    parser.add_argument("--replicated", action="store_true",
                        help="the designs with a replicated baseline instead of equal seeds")
    parser.add_argument("--noise", action="store_true",
                        help="null studies under unequal, heavy-tailed and lost-seed noise")
    parser.add_argument("--advice", action="store_true",
                        help="re-simulate each undecided factor at its advised seeds")
    parser.add_argument("--adaptive", action="store_true",
                        help="studies that add seeds until their factors are decided")
    parser.add_argument("--planted", action="store_true",
                        help="the planted study: until decided against fixed seeds per point")
    parser.add_argument("--max-trials", type=int, default=400,
                        help="for --adaptive, --planted, and --advice's adaptive design")
    parser.add_argument("--design", action="append", choices=list(ADVICE_DESIGNS),
                        help="for --advice: only this design (repeatable; default: all)")
    parser.add_argument("--processes", type=int, default=2,
                        help="for --advice, --adaptive, --planted")
    args = parser.parse_args()
    if args.planted:
        print(markdown_table(planted_comparison(args.studies, (3, 4, 5),
                                                (60, 80, 100, 120, 140, 160), args.max_trials,
                                                args.processes)))
    elif args.adaptive:
        print(markdown_table(adaptive_table(args.studies, args.processes, args.max_trials)))
    elif args.advice:
        print(markdown_table(advice_table(args.studies, args.processes, args.max_trials,
                                          args.design or list(ADVICE_DESIGNS))))
    elif args.noise:
        print(markdown_table(noise_table(args.studies)))
    elif args.studies:
        result = table(args.studies, REPLICATED if args.replicated else EQUAL)
        shown = result.assign(**{c: result[c].map("{:.3f}".format)
                                 for c in result.columns[3:]})
        print(markdown_table(shown))
    if args.reports:
        reports(args.reports)


if __name__ == "__main__":
    main()
