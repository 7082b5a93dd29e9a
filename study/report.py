"""Write a study's report to `reports/<name>/`: report.md, report.html (self-contained: figures
embedded, opens offline), trials.csv, curves.csv and the figures (PNG and SVG); and attach it to
the Optuna study so optuna-dashboard shows it (study.dashboard: the report as the study's note
with its figures, the ranking and the comparison of all factors on the study's page).

Works on any study in any storage, including one still running or interrupted: it uses the
finished trials and says how many. It reads the study's factors, levels and baseline from the
study's spec (study.spec); a study made before specs existed is read from its trials, with a
note. Written automatically at the end of a sweep, or:

    python -m study.report name=ofat-quick storage=sqlite:///results/optuna.db
    python -m study.report compare=ofat-quick,ofat-full     # studies side by side (study.compare)

Beyond the study itself, the report shows how its ranking changed over training (the test
accuracy after every epoch) and, when the storage holds the same design at other budgets, how
their rankings compare (study.stability computes both).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from omegaconf import DictConfig

from study import compare, dashboard, joint, plots, stability, stats
from study.analysis import (
    curves_frame,
    design_table,
    finished,
    outcome_counts,
    seed_noise,
    trials_frame,
)
from study.cli import run_app
from study.cost import point_costs
from study.document import Block, fmt, to_html, to_markdown
from study.errors import UserError
from study.paths import REPORTS, check_outputs, check_writable, named_folder
from study.spec import StudySpec, study_spec
from study.storage import mask_url, open_storage

log = logging.getLogger("study.report")
CLAIMED_MOST = ("channels", "activation", "preprocessing")  # the textbook: these matter most,
CLAIMED_LESS = ("dropout", "pooling", "batch_size", "lr")  # these less; it ranks no others


def ranking_table(ranking: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "rank (95% interval)": ranking.apply(stats.rank_text, axis=1),
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


def level_table(analysis: stats.Analysis) -> pd.DataFrame:
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
               "this study": f"rank {stats.rank_text(r)}, {verdict}", "agreement": "n/a"}
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
    by_verdict = {v: ranking[ranking["verdict"] == v] for v in stats.VERDICTS}
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
    """`a (12 trials), b (3 trials)`, flagged when the trials differ."""
    counts = values.fillna("unrecorded").value_counts()
    listed = ", ".join(f"{value} ({count} trials)" for value, count in counts.items())
    return listed + (" **(differs between trials)**" if len(counts) > 1 else "")


def grown(entry: dict[str, Any]) -> str:
    """What one growth of the study added, in words."""
    parts = []
    if "seeds" in entry:
        parts.append(f"seeds {', '.join(map(str, entry['seeds']))}")
    if "baseline_seeds" in entry:
        parts.append(f"baseline seeds {', '.join(map(str, entry['baseline_seeds']))}")
    for factor, levels in entry.get("levels", {}).items():
        parts.append(f"{factor} levels {', '.join(map(str, levels))}")
    if "n_trials" in entry:
        parts.append(f"trials up to {entry['n_trials']}")
    return "added " + "; ".join(parts)


def setup_lines(spec: StudySpec, trials: pd.DataFrame) -> list[str]:
    """What the study is (its spec), how it grew, and where and with what its trials ran."""
    setup, created = spec.setup, spec.created
    counts = ", ".join(f"{k}: {v}" for k, v in outcome_counts(trials).items())
    lines = [
        f"Design: `{spec.design}`; factors varied: {', '.join(spec.varied) or 'none'}; seeds: "
        f"{', '.join(map(str, spec.seeds)) or 'n/a'}"
        + (f"; the baseline's seeds: {', '.join(map(str, spec.baseline_seeds))}"
           if spec.baseline_seeds and spec.baseline_seeds != spec.seeds else ""),
        f"Trials: {len(trials)} in the study, {len(finished(trials))} finished and used ({counts})",
        f"Data: {created.get('data_source', '?')} (fingerprint "
        f"`{setup.get('data.fingerprint', '?')}`); preprocessing statistics fitted on the "
        "training split",
        f"Training: {spec.setting('train.epochs') or '?'} epochs, "
        f"{setup.get('train.optimizer', '?')} "
        f"(momentum {setup.get('train.momentum', '?')}), {setup.get('train.schedule', '?')} "
        f"schedule, weight decay {setup.get('train.weight_decay', '?')}, augmentation "
        f"{'on' if setup.get('train.augment') else 'off'}; training subset: "
        f"{setup.get('data.train_subset') or 'all'}; test subset: "
        f"{setup.get('data.test_subset') or 'all'}"]
    if spec.recorded:
        lines.append(f"Study spec: identity `{spec.identity_hash()}` (format {spec.version}), "
                     f"created {created.get('at', '?')} by code {created.get('code', '?')} on "
                     f"{created.get('device', '?')} (torch {created.get('torch', '?')}, optuna "
                     f"{created.get('optuna', '?')}, python {created.get('python', '?')})")
        lines += [f"Grown {entry['at']} by code {entry['code']}: {grown(entry)}"
                  for entry in spec.history]
    lines += [f"Devices: {spread(trials['device'])}", f"Code: {spread(trials['code'])}"]
    return lines


def method_lines(analysis: stats.Analysis, spec: StudySpec) -> list[str]:
    """How the ranking below was decided, with this study's noise."""
    noise, points = analysis.noise, f"{100 * analysis.practical_effect:g} point(s)"
    shared = (" OFAT's slices share the baseline point, so the factor tests are correlated; "
              "Holm's correction holds under any dependence." if spec.kind.on_slices else "")
    return [
        f"**Noise floor**: the seed-to-seed std of converged test accuracy is "
        f"{fmt(noise['baseline_std'])} at the baseline ({noise['baseline_seeds']} converged "
        f"seeds) and {fmt(noise['pooled_std'])} pooled over all design points.",
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
        f"{stats.ALPHA:.0%}." + shared,
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


def build_blocks(spec: StudySpec, trials: pd.DataFrame, analysis: stats.Analysis,
                 figures: dict[str, list[str]], pairs: pd.DataFrame,
                 importances: pd.DataFrame, over_epochs: stability.EpochRanking | None = None,
                 across: stability.CrossStudy | None = None) -> list[Block]:
    budget = spec.setup.get("budget") or "?"
    order = [point.id for point in spec.points()] if spec.kind.fixed else None
    ranking, design = analysis.ranking, design_table(trials, order)
    costs = point_costs(spec)
    design.insert(1, "cost (x baseline)", design["design_point"].map(
        lambda p: fmt(costs.get(p), ".2f")))
    blocks: list[Block] = []
    if budget != "full":
        blocks.append(("note", f"**Budget `{budget}`**: a reduced study (training subset, fewer "
                       "epochs, fewer seeds), a preview, not the full result. With so few "
                       "optimizer steps, large batches and small learning rates are penalised far "
                       "more than in the full study. Run with `budget=full` for the real answer."))
    if not spec.recorded:
        blocks.append(("note", "This study was made by an older version of this tool and records "
                       "no study spec: its factors, levels and baseline are read from its trials."))
    if spec.kind.sampled and spec.sampler == "tpe":
        blocks.append(("note", "TPE concentrates its trials where accuracy was high, so the "
                       "factors' marginal means are confounded with each other: read the ranking "
                       "as a hint and check it with `sweep.sampler=random` or `qmc`."))
    if figures["overview"]:
        blocks += [("h2", "At a glance"),
                   ("p", "Every factor on one accuracy scale, its levels in the design's order: "
                    "each dot is one seed, the diamonds are level means with 95% intervals, the "
                    "green column is the baseline level, the red band the baseline's mean ± 2 "
                    "seed std (what noise alone moves a level by), crosses on the bottom edge "
                    "are diverged trials."), ("img", figures["overview"][0])]
    blocks += [("h2", "Setup"), ("list", setup_lines(spec, trials)), ("h2", "Ranking"),
               ("list", method_lines(analysis, spec))]
    if ranking.empty:
        blocks.append(("p", "No factor is varied in this study."))
    else:
        blocks += [("table", ranking_table(ranking)), *[("img", s) for s in figures["influence"]],
                   ("h2", "The textbook's claim vs this study"),
                   ("p", "The claim: the number of kernels, the activation type and the "
                    "preprocessing matter most; dropout, pooling, batch size and learning rate "
                    "less. A factor agrees (or disagrees) only when its rank interval lies wholly "
                    "inside or wholly outside this study's top three and its verdict supports it "
                    "(influential to be among the top three; decided, whatever it is, to be "
                    "outside them); otherwise this study cannot tell yet. Factors the textbook "
                    "does not rank are marked not named."),
                   ("table", claim_table(ranking)),
                   ("h2", "What to tune first"), ("list", recommendations(ranking)),
                   ("h2", "Accuracy and divergence by level"), ("table", level_table(analysis)),
                   *[("img", s) for s in figures["factor"]],
                   ("h2", "Learning curves"), *[("img", s) for s in figures["curves"]],
                   ("h2", "Ranking over training time"), *epoch_blocks(over_epochs, figures)]
    if across is not None:
        blocks += [("h2", "Across budgets"),
                   *compare.cross_study_blocks(across, next(iter(figures["across"]), None))]
    if not pairs.empty:
        shown = pairs.assign(**{c: pairs[c].map(lambda v: fmt(v, ".2g"))
                                for c in ("interaction_p", "interaction_p_holm",
                                          "interaction_eta_squared")})
        blocks += [("h2", "Interactions"), ("table", shown),
                   *[("img", s) for s in figures["interaction"]]]
    if not importances.empty:
        blocks += [("h2", "Optuna importance evaluators"),
                   ("p", "Shares of importance, mean and std over bootstrap resamples of the "
                    "trials. They sum to one even for pure noise, so each is shown beside the "
                    "share the same evaluator gives on the same trials with their accuracies "
                    "shuffled: a share near its shuffled reference is noise. PED-ANOVA runs only "
                    f"when at least {joint.PED_ANOVA_MIN_TOP} trials lie in its top "
                    f"{joint.PED_ANOVA_QUANTILE:.0%}."),
                   ("table", importances.assign(**{c: importances[c].map(fmt) for c in
                                                   ("mean", "std", "shuffled_mean")}))]
    unusable = trials[trials["outcome"].isin(["diverged", "failed"])]
    if figures["time"]:
        blocks += [("h2", "Accuracy vs training time"), ("img", "accuracy_vs_time")]
    blocks += [("h2", "Design"),
               ("p", "Cost: the point's multiply-accumulates per image times its epochs, "
                "relative to the baseline (the sweep starts the most expensive points first)."),
               ("table", design.assign(
                   mean=design["mean"].map(fmt), std=design["std"].map(fmt))),
               ("h2", "Diverged and failed trials"),
               ("p", "Rule: a diverged trial (loss NaN/inf) is a result of its settings: it "
                "counts in its level's divergence rate, which is tested on its own, and not in "
                "accuracy (it records chance accuracy, 0.1). A failed trial (an exception or an "
                "interruption) has no result and is left out of the analysis, listed here.")]
    if unusable.empty:
        blocks.append(("p", "None."))
    else:
        blocks.append(("table", unusable[["number", "outcome", "design_point", "seed",
                                          "reason"]].fillna("")))
    blocks.append(("p", "All trials: `trials.csv`; per-epoch curves: `curves.csv`."))
    return blocks


def epoch_blocks(over_epochs: stability.EpochRanking | None,
                 figures: dict[str, list[str]]) -> list[Block]:
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
    table = pd.DataFrame({"epoch": corr["epoch"], **compare.correlation_columns(corr)})
    return [("p", "The test accuracy after every epoch (each trial's Optuna intermediate values, "
             "plotted by optuna-dashboard) gives each factor's effect as it would have been "
             "judged had training stopped there, and each epoch's ranking is compared with the "
             f"final one ({over_epochs.trials} converged trials tested after every epoch; 95% "
             "intervals from a residual bootstrap of the design points). " + stable),
            *[("img", s) for s in figures["epochs"]], ("table", table)]


FIGURES = ("overview", "influence", "factor", "curves", "epochs", "across", "interaction",
           "time")


def draw_figures(trials: pd.DataFrame, curves: pd.DataFrame, analysis: stats.Analysis,
                 spec: StudySpec, tables: dict, over_epochs: stability.EpochRanking | None,
                 across: stability.CrossStudy | None, out: Path) -> dict[str, list[str]]:
    """The figures, for the factors with a finished trial (in the design's order); none
    before any trial finishes."""
    ranking = analysis.ranking
    if finished(trials).empty:
        return {group: [] for group in FIGURES}
    with_data = set(ranking.loc[ranking["verdict"] != "no data", "factor"])
    factors = [f for f in spec.factors if f in with_data]
    has_levels = [f for f in factors if f in set(analysis.levels["factor"])]
    return {
        "overview": ([plots.plot_overview(trials, analysis.levels, analysis.noise, has_levels,
                                          spec, out)] if has_levels else []),
        "influence": ([plots.plot_influence(ranking, analysis.noise,
                                           analysis.practical_effect, out)]
                      if ranking["effect"].notna().any() else []),
        "factor": [plots.plot_factor(trials, analysis.levels, f, spec, out) for f in factors],
        "curves": [plots.plot_curves(curves, f, spec, out) for f in factors],
        "epochs": [plots.plot_epoch_ranking(over_epochs, out)] if over_epochs else [],
        "across": ([plots.plot_cross_study(across, out)]
                   if across is not None and across.effects["effect"].notna().any() else []),
        "interaction": [plots.plot_interaction(t, a, b, out) for (a, b), t in tables.items()],
        "time": [plots.plot_time(trials, out)],
    }


def write_report(study: optuna.Study, reports_root: Path, artifact_dir: Path | None = None,
                 practical_effect: float = stats.PRACTICAL_EFFECT) -> tuple[Path, pd.DataFrame]:
    """Write the report files; with artifact_dir, also attach the report to the study. Returns
    the report's folder and its ranking table."""
    out = named_folder(reports_root, study.study_name)
    out.mkdir(parents=True, exist_ok=True)
    spec = study_spec(study)
    trials, curves = trials_frame(study, spec), curves_frame(study, spec)
    trials.to_csv(out / "trials.csv", index=False)
    curves.to_csv(out / "curves.csv", index=False)
    analysis = stats.analyse(trials, spec, seed_noise(trials), practical_effect)
    pairs, tables = joint.interactions(trials, spec)
    importances = (joint.optuna_importances(study, spec) if not spec.kind.on_slices
                   else pd.DataFrame(columns=joint.IMPORTANCE_COLUMNS))  # not for OFAT's L
    over_epochs = stability.epoch_ranking(trials, curves, spec)
    related = compare.related_studies(study, spec)
    across = (stability.compare_rankings(
        [*compare.rankings(related, practical_effect),
         stability.study_ranking(study.study_name, trials, spec, analysis)], study.study_name)
        if related else None)
    figures = draw_figures(trials, curves, analysis, spec, tables, over_epochs, across, out)
    blocks = build_blocks(spec, trials, analysis, figures, pairs, importances, over_epochs,
                          across)
    title = f"Sensitivity study: {study.study_name}"
    markdown = to_markdown(title, blocks)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(to_html(title, markdown, out))
    if artifact_dir is not None:
        stems = [stem for group in figures.values() for stem in group]
        links = dashboard.upload_figures(study, stems, out, artifact_dir)
        note = to_markdown(title, [("note", dashboard.importance_caveat(spec)), *blocks],
                           links.__getitem__)
        dashboard.publish(study, note, dashboard.study_page_figures(trials, analysis, spec))
    return out, ranking_table(analysis.ranking)


def run_report(cfg: DictConfig) -> None:
    if cfg.compare:
        check_writable(REPORTS / "compare", "reports")
        storage = open_storage(cfg.storage, create=False)
        out = compare.write_comparison(storage, list(cfg.compare), cfg.storage, REPORTS,
                                       cfg.analysis.practical_effect)
        log.info("comparison written to %s", out / "report.html")
        return
    check_outputs(cfg, None, report=True)
    storage = open_storage(cfg.storage, create=False)  # reading: never make a new storage
    names = [s.study_name for s in storage.get_all_studies()]
    if cfg.name not in names:
        raise UserError(f"no study named {cfg.name!r} in {mask_url(cfg.storage)}; studies there: "
                        f"{', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    out, ranking = write_report(study, REPORTS, Path(cfg.artifact_dir),
                                cfg.analysis.practical_effect)
    finished_trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    log.info("report of %d finished trials (of %d) written to %s", len(finished_trials),
             len(study.trials), out / "report.html")
    brief = ranking[["factor", "rank (95% interval)", "verdict", "effect [95% CI]"]]
    print(f"Ranking of study {study.study_name}:\n"
          + (brief.to_string(index=False) if not ranking.empty else "(no factor varied)"))


def list_override(args: list[str], key: str) -> list[str]:
    """`key=a,b` as the list `key=[a,b]`: Hydra reads a bare comma list as a sweep."""
    return [f"{key}=[{arg.partition('=')[2]}]" if arg.startswith(f"{key}=") and
            not arg.partition("=")[2].startswith("[") else arg for arg in args]


def main() -> None:
    sys.argv[1:] = list_override(sys.argv[1:], "compare")
    run_app(run_report, "report")


if __name__ == "__main__":
    main()
