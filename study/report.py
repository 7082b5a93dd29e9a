"""Write a study's report to `reports/<name>/`: report.md, report.html (self-contained: figures
embedded, opens offline), trials.csv, curves.csv and the figures (PNG and SVG); and attach it to
the Optuna study so optuna-dashboard shows it (study.dashboard: the report as the study's note
with its figures, the ranking and the comparison of all factors on the study's page).

Works on any study in any storage, including one still running or interrupted: it uses the
finished trials and says how many. It reads the study's factors, levels and baseline from the
study's spec (study.spec); a study made before specs existed is read from its trials, with a
note. Written automatically at the end of a sweep, or:

    python -m study.report name=ofat-quick storage=sqlite:///results/optuna.db
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from markdown_it import MarkdownIt
from omegaconf import DictConfig

from study import dashboard, plots, stats
from study.analysis import (
    curves_frame,
    design_table,
    finished,
    outcome_counts,
    seed_noise,
    trials_frame,
)
from study.cli import run_app
from study.errors import UserError
from study.spec import StudySpec, study_spec
from study.storage import mask_url, open_storage

log = logging.getLogger("study.report")
CLAIMED_MOST = ("channels", "activation", "preprocessing")  # the textbook: the rest matter less
FEW_SEEDS = 5  # below this many seeds per design point, bootstrap intervals are unreliable
Block = tuple[str, Any]  # (kind, content): h2, p, note, list, table (DataFrame), img (stem)


def fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None or pd.isna(value) else format(value, spec)


def few_seeds_caveat(design: pd.DataFrame) -> str:
    seeds = design["finished"]
    if seeds.empty or seeds.min() >= FEW_SEEDS:
        return ""
    return (f" With {seeds.min()} seed(s) at some design points the bootstrap intervals are "
            f"missing (one seed) or too narrow (few seeds); run sweep.seeds={FEW_SEEDS} or more "
            "for intervals to cite.")


def ranking_table(ranking: pd.DataFrame) -> pd.DataFrame:
    tied = ranking["tied_with_next"] | ranking["tied_with_next"].shift(1, fill_value=False)
    return pd.DataFrame({
        "rank": [f"{r}=" if t else str(r) for r, t in zip(ranking["rank"], tied, strict=True)],
        "factor": ranking["factor"],
        "effect [95% CI]": [f"{fmt(e)} [{fmt(lo)}, {fmt(hi)}]" for e, lo, hi in zip(
            ranking["effect"], ranking["effect_ci_low"], ranking["effect_ci_high"], strict=True)],
        "eta²": ranking["eta_squared"].map(lambda v: fmt(v, ".2f")),
        "ANOVA p (Holm)": ranking["anova_p_holm"].map(lambda v: fmt(v, ".2g")),
        "Kruskal-Wallis p (Holm)": ranking["kruskal_p_holm"].map(lambda v: fmt(v, ".2g")),
        "verdict": ranking["verdict"],
        "best level": ranking["best_level"].astype(str),
        "worst level": ranking["worst_level"].astype(str),
        "trials": ranking["trials"],
    })


def claim_table(ranking: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in ranking.iterrows():
        claimed_most = r["factor"] in CLAIMED_MOST
        if r["verdict"] == "not testable":
            agrees = "cannot tell (no replicate seeds)"
        elif (r["rank"] <= len(CLAIMED_MOST)) == claimed_most:
            agrees = "agrees"
        else:
            agrees = "disagrees"
        rows.append({"factor": r["factor"],
                     "textbook": "matters most" if claimed_most else "matters less",
                     "this study": f"rank {r['rank']}, {r['verdict']}, effect {fmt(r['effect'])}",
                     "agreement": agrees})
    return pd.DataFrame(rows)


def recommendations(ranking: pd.DataFrame) -> list[str]:
    influential = ranking[ranking["verdict"] == "influential"]
    advice = [f"**{r['factor']}**: best level {r['best_level']}, worst {r['worst_level']}; "
              f"choosing well is worth up to {100 * r['effect']:.1f} points of test accuracy."
              for _, r in influential.iterrows()]
    if not advice:
        advice = ["No factor's effect stands out from seed noise in this study; run more seeds "
                  "(sweep.seeds) or the full budget before tuning by it."]
    quiet = ranking[ranking["verdict"].isin(["not distinguishable from seed noise", "small"])]
    if not quiet.empty:
        advice.append("Leave at the baseline for now (effect small or within seed noise): "
                      + ", ".join(quiet["factor"]) + ".")
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
        f"{', '.join(map(str, spec.seeds)) or 'n/a'}",
        f"Trials: {len(trials)} in the study, {len(finished(trials))} finished and used ({counts})",
        f"Data: {created.get('data_source', '?')} (fingerprint "
        f"`{setup.get('data.fingerprint', '?')}`); preprocessing statistics fitted on the "
        "training split",
        f"Training: {setup.get('train.epochs', '?')} epochs, {setup.get('train.optimizer', '?')} "
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


def build_blocks(spec: StudySpec, trials: pd.DataFrame, ranking: pd.DataFrame,
                 figures: dict[str, list[str]], pairs: pd.DataFrame,
                 importances: pd.DataFrame) -> list[Block]:
    budget = spec.setup.get("budget") or "?"
    noise, design = seed_noise(trials), design_table(trials)
    blocks: list[Block] = []
    if budget != "full":
        blocks.append(("note", f"**Budget `{budget}`**: a reduced study (training subset, fewer "
                       "epochs, fewer seeds), a preview, not the full result. With so few "
                       "optimizer steps, large batches and small learning rates are penalised far "
                       "more than in the full study. Run with `budget=full` for the real answer."))
    if not spec.recorded:
        blocks.append(("note", "This study was made by an older version of this tool and records "
                       "no study spec: its factors, levels and baseline are read from its trials."))
    blocks += [
        ("h2", "Setup"), ("list", setup_lines(spec, trials)), ("h2", "Ranking"),
        ("p", f"Noise floor: the seed-to-seed std of test accuracy is {fmt(noise['baseline_std'])}"
         f" at the baseline (seeds: {noise['baseline_seeds']}) and {fmt(noise['pooled_std'])} "
         "pooled over all design points. Each factor's levels are compared with a one-way ANOVA "
         "(Kruskal-Wallis as a check), Holm-corrected over the factors at "
         f"{stats.ALPHA:.0%}; a significant factor is *influential* when its effect (best minus "
         f"worst level mean) is at least {100 * stats.PRACTICAL_EFFECT:.0f} point, else *small*. "
         "Intervals are 95% bootstrap CIs over seeds; ranks whose effect intervals overlap are "
         "ties (=)." + few_seeds_caveat(design))]
    if ranking.empty:
        return [*blocks, ("p", "No finished trials yet.")]
    blocks += [("table", ranking_table(ranking)), ("img", "influence"),
               ("h2", "The textbook's claim vs this study"),
               ("p", "The claim: the number of kernels, the activation type and the preprocessing "
                "matter most; dropout, pooling, batch size and learning rate less. A factor "
                "agrees when it ranks in this study's top three exactly when the textbook puts "
                "it among the three that matter most."),
               ("table", claim_table(ranking)),
               ("h2", "What to tune first"), ("list", recommendations(ranking)),
               ("h2", "Accuracy by level"), *[("img", s) for s in figures["factor"]],
               ("h2", "Learning curves"), *[("img", s) for s in figures["curves"]]]
    if not pairs.empty:
        shown = pairs.assign(**{c: pairs[c].map(lambda v: fmt(v, ".2g"))
                                for c in ("interaction_p", "interaction_p_holm",
                                          "interaction_eta_squared")})
        blocks += [("h2", "Interactions"), ("table", shown),
                   *[("img", s) for s in figures["interaction"]]]
    if not importances.empty:
        blocks += [("h2", "Optuna importance evaluators"),
                   ("p", "Shares of importance (they sum to one even for pure noise: read them "
                    "with the tests above), mean and std over bootstrap resamples of the trials."),
                   ("table", importances.assign(mean=importances["mean"].map(fmt),
                                                std=importances["std"].map(fmt)))]
    unusable = trials[trials["outcome"].isin(["diverged", "failed"])]
    blocks += [("h2", "Accuracy vs training time"), ("img", "accuracy_vs_time"),
               ("h2", "Design"), ("table", design.assign(
                   mean=design["mean"].map(fmt), std=design["std"].map(fmt))),
               ("h2", "Diverged and failed trials"),
               ("p", "Rule: a diverged trial (loss NaN/inf) counts with chance accuracy (0.1), "
                "since diverging is an effect of its settings; a failed trial (an exception or "
                "an interruption) has no accuracy and is left out of the analysis, listed here.")]
    if unusable.empty:
        blocks.append(("p", "None."))
    else:
        blocks.append(("table", unusable[["number", "outcome", "design_point", "seed",
                                          "reason"]].fillna("")))
    blocks.append(("p", "All trials: `trials.csv`; per-epoch curves: `curves.csv`."))
    return blocks


def _md_table(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(title: str, blocks: list[Block],
                image_link: Callable[[str], str] = lambda stem: f"{stem}.png") -> str:
    """The report as Markdown; image_link: where each figure is (the file next to report.md,
    or the artifact the dashboard serves)."""
    parts = [f"# {title}"]
    for kind, content in blocks:
        if kind == "h2":
            parts.append(f"## {content}")
        elif kind == "p":
            parts.append(content)
        elif kind == "note":
            parts.append(f"> {content}")
        elif kind == "list":
            parts.append("\n".join(f"- {item}" for item in content))
        elif kind == "table":
            parts.append(_md_table(content))
        else:
            parts.append(f"![{content}]({image_link(content)})")
    return "\n\n".join(parts) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f0f3f7}
img{max-width:100%;margin:.5em 0}code{background:#f3f3f3;padding:0 .2em}
blockquote{background:#fff4d6;border-left:4px solid #e0a800;margin:1em 0;padding:.1em .8em}"""
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML shown as text


def to_html(title: str, markdown: str, figures_dir: Path) -> str:
    """The Markdown report as one self-contained page: each figure embedded as a data URI."""
    tokens = MARKDOWN.parse(markdown)
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                data = (figures_dir / str(child.attrGet("src"))).read_bytes()
                child.attrSet("src", f"data:image/png;base64,{base64.b64encode(data).decode()}")
    body = MARKDOWN.renderer.render(tokens, MARKDOWN.options, {})
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n")


def draw_figures(trials: pd.DataFrame, curves: pd.DataFrame, ranking: pd.DataFrame,
                 intervals: pd.DataFrame, spec: StudySpec, tables: dict, out: Path
                 ) -> dict[str, list[str]]:
    factors = list(ranking["factor"])
    return {
        "influence": [plots.plot_influence(ranking, seed_noise(trials), out)],
        "factor": [plots.plot_factor(trials, intervals, f, spec, out) for f in factors],
        "curves": [plots.plot_curves(curves, f, spec, out) for f in factors],
        "interaction": [plots.plot_interaction(t, a, b, out) for (a, b), t in tables.items()],
        "time": [plots.plot_time(trials, out)],
    }


def write_report(study: optuna.Study, reports_root: Path, artifact_dir: Path | None = None
                 ) -> tuple[Path, pd.DataFrame]:
    """Write the report files; with artifact_dir, also attach the report to the study. Returns
    the report's folder and its ranking table."""
    out = reports_root / study.study_name
    out.mkdir(parents=True, exist_ok=True)
    spec = study_spec(study)
    trials, curves = trials_frame(study, spec), curves_frame(study, spec)
    trials.to_csv(out / "trials.csv", index=False)
    curves.to_csv(out / "curves.csv", index=False)
    ranking = stats.influence(trials, spec)
    pairs, tables = stats.interactions(trials, spec)
    importances = (stats.optuna_importances(study, spec) if not spec.kind.on_slices
                   else pd.DataFrame(columns=stats.IMPORTANCE_COLUMNS))  # not for OFAT's L
    intervals = stats.level_intervals(trials, spec)
    figures = (draw_figures(trials, curves, ranking, intervals, spec, tables, out)
               if not ranking.empty else {})
    blocks = build_blocks(spec, trials, ranking, figures, pairs, importances)
    title = f"Sensitivity study: {study.study_name}"
    markdown = to_markdown(title, blocks)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(to_html(title, markdown, out))
    if artifact_dir is not None:
        stems = [stem for group in figures.values() for stem in group]
        links = dashboard.upload_figures(study, stems, out, artifact_dir)
        note = to_markdown(title, [("note", dashboard.importance_caveat(spec)), *blocks],
                           links.__getitem__)
        dashboard.publish(study, note, dashboard.study_page_figures(trials, ranking, intervals,
                                                                    spec))
    return out, ranking_table(ranking) if not ranking.empty else pd.DataFrame()


def run_report(cfg: DictConfig) -> None:
    storage = open_storage(cfg.storage)
    names = [s.study_name for s in storage.get_all_studies()]
    if cfg.name not in names:
        raise UserError(f"no study named {cfg.name!r} in {mask_url(cfg.storage)}; studies there: "
                        f"{', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    out, ranking = write_report(study, Path("reports"), Path(cfg.artifact_dir))
    finished_trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    log.info("report of %d finished trials (of %d) written to %s", len(finished_trials),
             len(study.trials), out / "report.html")
    print(f"Ranking of study {study.study_name}:\n"
          + (ranking.to_string(index=False) if not ranking.empty else "(no finished trials)"))


def main() -> None:
    run_app(run_report, "report")


if __name__ == "__main__":
    main()
