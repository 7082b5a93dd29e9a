"""The report's sections as data: the ranking, level and claim tables (DataFrames) and the
lines of the setup, the method, the advice and the ranking over epochs, from what study.stats
computed. study.reporting.report puts them in order and writes them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from study.design.spec import StudySpec
from study.reporting.compare import correlation_columns
from study.reporting.document import Block, fmt, literal
from study.stats import stability
from study.stats.frames import finished, outcome_counts
from study.stats.ranking import ALPHA, VERDICTS, Analysis, rank_text

CLAIMED_MOST = ("channels", "activation", "preprocessing")  # the textbook: these matter most,
CLAIMED_LESS = ("dropout", "pooling", "batch_size", "lr")  # these less; it ranks no others


def ranking_table(ranking: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "rank (95% interval)": ranking.apply(rank_text, axis=1),
        "factor": ranking["factor"],
        "verdict": ranking["verdict"],
        "effect [95% CI]": [f"{fmt(e)} [{fmt(lo)}, {fmt(hi)}]" for e, lo, hi in zip(
            ranking["effect"], ranking["effect_ci_low"], ranking["effect_ci_high"], strict=True)],
        "largest difference from baseline": [
            "n/a" if pd.isna(d) else f"{d:+.3f} ({level})" for d, level in zip(
                ranking["largest_difference"], ranking["largest_level"], strict=True)],
        "raw range": ranking["raw_range"].map(fmt),
        "ω²": ranking["omega_squared"].map(lambda v: fmt(v, ".2f")),
        "accuracy p (Holm)": ranking["accuracy_p_holm"].map(lambda v: fmt(v, ".2g")),
        "diverged": [f"{fmt(d, '.0f')}/{fmt(n, '.0f')}, p (Holm) {fmt(p, '.2g')}" for d, n, p in
                     zip(ranking["diverged"], ranking["trials"], ranking["divergence_p_holm"],
                         strict=True)],
        "why": ranking["reason"],
    })


def level_table(analysis: Analysis) -> pd.DataFrame:
    """Each level: mean accuracy (converged trials), its difference from the baseline with the
    simultaneous interval, and its divergence rate."""
    differences = analysis.differences.rename(columns={"ci_low": "diff_low",
                                                       "ci_high": "diff_high"})
    levels = analysis.levels.merge(differences, on=["factor", "level"], how="left")
    return pd.DataFrame({
        "factor": levels["factor"],
        "level": [f"{v} (baseline)" if b else str(v) for v, b in zip(
            levels["level"], levels["baseline"], strict=True)],
        "accuracy [95% CI] (converged)": [
            f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}] ({n})" for m, lo, hi, n in zip(
                levels["mean"], levels["ci_low"], levels["ci_high"], levels["n"], strict=True)],
        "difference from baseline [simultaneous 95% CI]": [
            "" if b else f"{fmt(d, '+.3f')} [{fmt(lo, '+.3f')}, {fmt(hi, '+.3f')}]"
            for d, lo, hi, b in zip(levels["difference"], levels["diff_low"],
                                    levels["diff_high"], levels["baseline"], strict=True)],
        "p (adjusted)": ["" if b else fmt(p, ".2g") for p, b in zip(
            levels["p"], levels["baseline"], strict=True)],
        "diverged [95% CI]": [f"{k}/{n} = {fmt(r, '.2f')} [{fmt(lo, '.2f')}, {fmt(hi, '.2f')}]"
                              for k, n, r, lo, hi in zip(levels["diverged"], levels["trials"],
                                                         levels["rate"], levels["rate_low"],
                                                         levels["rate_high"], strict=True)],
        "Fisher p": levels["fisher_p"].map(lambda v: fmt(v, ".2g")),
    })


def claim_table(ranking: pd.DataFrame) -> pd.DataFrame:
    """The textbook's claim per factor: agrees / disagrees only when the rank interval lies
    wholly inside or outside the top three and the verdict supports it."""
    top = len(CLAIMED_MOST)
    rows = []
    for _, r in ranking.iterrows():
        claimed_most, verdict = r["factor"] in CLAIMED_MOST, r["verdict"]
        row = {"factor": r["factor"], "textbook": "not named",
               "this study": f"rank {rank_text(r)}, {verdict}", "agreement": "n/a"}
        rows.append(row)
        if not claimed_most and r["factor"] not in CLAIMED_LESS:
            continue
        inside = pd.notna(r["rank_high"]) and r["rank_high"] <= top
        outside = pd.notna(r["rank_low"]) and r["rank_low"] > top
        decided = verdict in ("influential", "small", "negligible")
        if inside and verdict == "influential":
            shown_most = True
        elif outside and decided:
            shown_most = False
        else:
            shown_most = None
        if shown_most is None:
            why = ("verdict " + verdict if not decided else
                   "no rank interval" if pd.isna(r["rank_low"]) else
                   f"rank interval {r['rank_low']}-{r['rank_high']} straddles the top {top}")
            agreement = f"cannot tell yet ({why})"
        else:
            agreement = "agrees" if shown_most == claimed_most else "disagrees"
        row |= {"textbook": "matters most" if claimed_most else "matters less",
                "agreement": agreement}
    return pd.DataFrame(rows)


def recommendations(ranking: pd.DataFrame) -> list[str]:
    """What to tune first, from the verdicts: only a negligible factor is left at its baseline."""
    ranking = ranking.map(lambda v: literal(v) if isinstance(v, str) else v)  # names, levels
    by_verdict = {v: ranking[ranking["verdict"] == v] for v in VERDICTS}
    advice = [f"**{r['factor']}** ({r['reason']}): best level {r['best_level']}, worst "
              f"{r['worst_level']}; the largest difference from the baseline is "
              f"{100 * r['largest_difference']:+.1f} points (at {r['largest_level']}), the effect "
              f"between {100 * r['effect_ci_low']:.1f} and {100 * r['effect_ci_high']:.1f} points."
              if pd.notna(r["largest_difference"]) else f"**{r['factor']}**: {r['reason']}."
              for _, r in by_verdict["influential"].iterrows()]
    if not advice:
        advice = ["No factor is shown to matter yet; the undecided ones below say how many seeds "
                  "would decide them."]
    groups = (("negligible", "Leave at the baseline (shown negligible)"),
              ("small", "Tune last (a real but small effect)"))
    advice += [f"{text}: {', '.join(by_verdict[v]['factor'])}." for v, text in groups
               if not by_verdict[v].empty]
    advice += [f"Undecided, **{r['factor']}**: {r['reason']}." for _, r in
               by_verdict["undetermined"].iterrows()]
    advice += [f"No data, **{r['factor']}**: {r['reason']}." for _, r in
               by_verdict["no data"].iterrows()]
    return advice


def spread(values: pd.Series) -> str:
    """`a (12 trials), b (3 trials)`, flagged when the trials differ; n/a without trials."""
    counts = values.fillna("unrecorded").value_counts()
    listed = ", ".join(f"{literal(value)} ({count} trials)" for value, count in counts.items())
    return (listed or "n/a (no trial finished)") + (
        " **(differs between trials)**" if len(counts) > 1 else "")


def grown(entry: dict[str, Any]) -> str:
    """What one growth of the study added, in words."""
    parts = []  # every value from the study's database, shown literally
    if "seeds" in entry:
        parts.append(f"seeds {', '.join(map(literal, entry['seeds']))}")
    if "baseline_seeds" in entry:
        parts.append(f"baseline seeds {', '.join(map(literal, entry['baseline_seeds']))}")
    for factor, levels in entry.get("levels", {}).items():
        parts.append(f"{literal(factor)} levels {', '.join(map(literal, levels))}")
    if "n_trials" in entry:
        parts.append(f"trials up to {entry['n_trials']}")
    return "added " + "; ".join(parts)


def setup_lines(spec: StudySpec, trials: pd.DataFrame) -> list[str]:
    """What the study is (its spec), how it grew, and where and with what its trials ran. Every
    value comes from the study's database, which anyone sharing it can write: shown literally."""
    setup = {key: literal(value) for key, value in spec.setup.items()}
    created = {key: literal(value) for key, value in spec.created.items()}
    counts = ", ".join(f"{k}: {v}" for k, v in outcome_counts(trials).items())
    ran = finished(trials)  # a trial that never ran has no device or code to differ
    lines = [
        f"Design: {literal(spec.design)}; factors varied: "
        f"{', '.join(map(literal, spec.varied)) or 'none'}; seeds: "
        f"{', '.join(map(literal, spec.seeds)) or 'n/a'}"
        + (f"; the baseline's seeds: {', '.join(map(literal, spec.baseline_seeds))}"
           if spec.baseline_seeds and spec.baseline_seeds != spec.seeds else ""),
        f"Trials: {len(trials)} in the study, {len(ran)} finished and used ({counts})",
        f"Data: {created.get('data_source', '?')} (fingerprint "
        f"{setup.get('data.fingerprint', '?')}); preprocessing statistics fitted on the "
        "training split",
        f"Training: {spec.setting('train.epochs') or '?'} epochs, "
        f"{setup.get('train.optimizer', '?')} "
        f"(momentum {setup.get('train.momentum', '?')}), {setup.get('train.schedule', '?')} "
        f"schedule, weight decay {setup.get('train.weight_decay', '?')}, augmentation "
        f"{'on' if setup.get('train.augment') else 'off'}, precision "
        f"{setup.get('train.precision', '?')}; training subset: "
        f"{setup.get('data.train_subset') or 'all'}; test subset: "
        f"{setup.get('data.test_subset') or 'all'}"]
    if spec.recorded:
        lines.append(f"Study spec: identity `{spec.identity_hash()}` (format {spec.version}), "
                     f"created {created.get('at', '?')} by code {created.get('code', '?')} on "
                     f"{created.get('device', '?')} (torch {created.get('torch', '?')}, optuna "
                     f"{created.get('optuna', '?')}, python {created.get('python', '?')})")
        lines += [f"Grown {literal(entry['at'])} by code {literal(entry['code'])}: {grown(entry)}"
                  for entry in spec.history]
    lines += [f"Devices: {spread(ran['device'])}", f"Code: {spread(ran['code'])}"]
    return lines


def method_lines(analysis: Analysis, spec: StudySpec) -> list[str]:
    """How the ranking below was decided, with this study's noise."""
    noise, points = analysis.noise, f"{100 * analysis.practical_effect:g} point(s)"
    shared = (" OFAT's slices share the baseline point, so the factor tests are correlated; "
              "Holm's correction holds under any dependence." if spec.plan.on_slices else "")
    return [
        f"**Noise floor**: the seed-to-seed std of converged test accuracy is "
        f"{fmt(noise.baseline_std)} at the baseline ({noise.baseline_converged} converged "
        f"seeds) and {fmt(noise.pooled_std)} pooled over all design points.",
        "**Model**: " + ("one for the whole study, accuracy ~ design point over the converged "
                         "trials: every test uses the noise pooled over all replicated points."
                         if analysis.pooled else
                         "no design point is replicated, so each factor's levels (bins of "
                         "sampled values) get a one-way model of their own, whose error includes "
                         "the other factors' effects (conservative)."),
        "**Tests**: per factor, an F-test of its levels against the baseline, each level's "
        "difference from the baseline with Dunnett-type simultaneous 95% intervals, and "
        "Fisher's exact test of each level's divergence rate against the baseline's; the factor "
        "tests (accuracy, and divergence where a trial diverged) are Holm-corrected together at "
        f"{ALPHA:.0%}." + shared,
        "**Effect**: the largest difference from the baseline less what that maximum averages "
        "when nothing matters (a factor with more levels gains no head start), clipped at zero, "
        "with the 95% interval the simultaneous intervals give; the raw range beside it.",
        f"**Verdicts** at a practical threshold of {points} (`analysis.practical_effect`): "
        "*influential*: significant and the effect's interval above the threshold, or a "
        "significant divergence difference; *small*: significant, every level shown within the "
        "threshold; *negligible*: not significant, every level shown within the threshold by an "
        "equivalence test (simultaneous 90% intervals) and none diverging more than the "
        "baseline; *undetermined*: none of these, with the seeds that would decide it.",
        "**Rank interval**: the central 95% of the ranks in 1000 redraws of the study under the "
        "fitted model."]


def epoch_blocks(over_epochs: stability.EpochRanking | None,
                 figure: str | None) -> list[Block]:
    """How each epoch's ranking agrees with the final one."""
    if over_epochs is None:
        return [("p", "n/a: no factor could be ranked after each epoch (the study trains one "
                 "epoch, or its trials recorded no per-epoch test accuracy).")]
    corr = over_epochs.correlations
    stable = (f"The ranking is stable from epoch {over_epochs.stable_from} of "
              f"{over_epochs.epochs}: from there on, every epoch's ranking has Spearman's rho "
              f"≥ {stability.STABLE_RHO} with the final one."
              if over_epochs.stable_from is not None else
              "n/a: Spearman's rho with the final ranking is undefined (fewer than "
              f"{stability.MIN_FACTORS} factors with a noise estimate).")
    table = pd.DataFrame({"epoch": corr["epoch"], **correlation_columns(corr)})
    return [("p", "The test accuracy after every epoch (each trial's Optuna intermediate values, "
             "plotted by optuna-dashboard) gives each factor's effect as it would have been "
             "judged had training stopped there, and each epoch's ranking is compared with the "
             f"final one ({over_epochs.trials} converged trials tested after every epoch; 95% "
             "intervals from a residual bootstrap of the design points). " + stable),
            *([("img", figure)] if figure else []), ("table", table)]


