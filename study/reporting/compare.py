"""Studies of one design at different budgets, side by side: does the cheap preview rank the
factors as the full study does?

    python -m study.report compare=ofat-quick,ofat-full   # reports/compare/ofat-quick_vs_ofat-full

The last study named is the reference. For each study: every factor's effect with its interval
and verdict; for each other study: Spearman's and Kendall's rank correlation of its effects with
the reference's, with bootstrap intervals (study.stats.stability), and the factors whose verdict
differs. A study's own report shows the same section automatically when its storage holds
studies of the same design and factors at other budgets (`related_studies`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from study.design.spec import StudySpec, study_spec
from study.errors import UserError
from study.paths import named_folder, written_whole
from study.reporting import plots
from study.reporting.document import fmt, render, to_html
from study.stats import stability
from study.stats.frames import trials_frame
from study.stats.ranking import rank_trials

Named = tuple[str, optuna.Study, StudySpec]
BUDGET_KEYS = {"train.epochs"}  # a factor on one of these keys has the budget's baseline


def at_other_budget(spec: StudySpec, other: StudySpec) -> bool:
    """Whether `other` is the design of `spec` (the same factors varied around the same
    baseline, apart from what the budget sets) at another budget."""
    def baseline(s: StudySpec) -> dict:
        return {n: v for n, v in s.baseline.items() if s.factors[n].key not in BUDGET_KEYS}

    return (other.design == spec.design and other.varied == spec.varied
            and baseline(other) == baseline(spec)
            and other.setup.get("budget") != spec.setup.get("budget"))


def related_studies(storage: optuna.storages.BaseStorage, name: str, spec: StudySpec
                    ) -> list[Named]:
    """The other studies in the storage of the design of study `name` at other budgets (those
    whose spec this code can read)."""
    found = []
    for summary in storage.get_all_studies():
        if summary.study_name == name:
            continue
        other = optuna.load_study(study_name=summary.study_name, storage=storage)
        try:
            other_spec = study_spec(other)
        except UserError:  # not this report's study: it says so when it is reported itself
            continue
        if at_other_budget(spec, other_spec):
            found.append((summary.study_name, other, other_spec))
    return found


def load_named(storage: optuna.storages.BaseStorage, names: list[str], where: str
               ) -> list[Named]:
    """The studies `names` of the storage; UserError naming one that is not there (`where`
    names the storage, its password masked)."""
    present = [s.study_name for s in storage.get_all_studies()]
    for name in names:
        if name not in present:
            raise UserError(f"compare: no study named {name!r} in {where}; studies "
                            f"there: {', '.join(present) or 'none'}")
    loaded = [optuna.load_study(study_name=name, storage=storage) for name in names]
    return [(name, study, study_spec(study)) for name, study in zip(names, loaded, strict=True)]


def rankings(studies: list[Named], practical_effect: float) -> list[stability.StudyRanking]:
    return [stability.study_ranking(name, rank_trials(trials_frame(study, spec), spec,
                                                      practical_effect))
            for name, study, spec in studies]


def effects_table(cross: stability.CrossStudy) -> pd.DataFrame:
    """One row per factor (the reference's rank order), a column per study: rank, effect with
    its interval, verdict."""
    effects = cross.effects
    names = list(dict.fromkeys(effects["study"]))
    order = list(effects[effects["study"] == cross.reference]["factor"])
    order += [f for f in dict.fromkeys(effects["factor"]) if f not in order]
    table = pd.DataFrame({"factor": order})
    for name in names:
        part = effects[effects["study"] == name].set_index("factor").reindex(order)
        budget, epochs = cross.budgets[name]
        table[f"{name} ({budget}, {epochs or '?'} epochs)"] = [
            "not in this study" if pd.isna(v) else
            f"rank {fmt(r, '.0f')}: {fmt(e)} [{fmt(lo)}, {fmt(hi)}], {v}"
            for r, e, lo, hi, v in zip(part["rank"], part["effect"], part["effect_ci_low"],
                                       part["effect_ci_high"], part["verdict"], strict=True)]
    return table


def correlation_columns(corr: pd.DataFrame) -> dict[str, list[str]]:
    """Spearman's and Kendall's columns of a correlations table, each `rho [low, high]`."""
    return {f"{name.capitalize()} [95% CI]": [
        f"{fmt(v, '.2f')} [{fmt(lo, '.2f')}, {fmt(hi, '.2f')}]" for v, lo, hi in zip(
            corr[name], corr[f"{name}_low"], corr[f"{name}_high"], strict=True)]
        for name in stability.CORRELATIONS}


def correlations_table(cross: stability.CrossStudy) -> pd.DataFrame:
    corr = cross.correlations
    return pd.DataFrame({"study": corr["study"], "factors ranked by both": corr["factors"],
                         **correlation_columns(corr)})


def across_context(cross: stability.CrossStudy, figure: str | None) -> dict[str, Any]:
    """What templates/_across.md.j2 says of the comparison (beside min_factors)."""
    return {"cross": cross, "effects": effects_table(cross),
            "correlations": correlations_table(cross), "across_figure": figure}


def write_comparison(storage: optuna.storages.BaseStorage, names: list[str], where: str,
                     reports_root: Path, practical_effect: float) -> Path:
    """reports/compare/<a>_vs_<b>...: report.md and report.html comparing the studies (the last
    one is the reference)."""
    studies = load_named(storage, names, where)
    designs = {spec.design for _, _, spec in studies}
    if len(designs) > 1:
        raise UserError(f"compare: the studies have different designs ({', '.join(designs)}): "
                        "compare studies of one design")
    out = named_folder(reports_root / "compare", "_vs_".join(names))
    cross = stability.compare_rankings(rankings(studies, practical_effect), names[-1])
    title = f"Studies compared: {', '.join(names)}"
    with written_whole(out) as draft:
        figure = (plots.plot_cross_study(cross, draft) if cross.effects["effect"].notna().any()
                  else None)
        markdown = render("compare.md.j2", title=title, min_factors=stability.MIN_FACTORS,
                          **across_context(cross, figure))
        (draft / "report.md").write_text(markdown)
        figures = [figure] if figure else []
        (draft / "report.html").write_text(to_html(title, markdown, draft, figures))
    return out
