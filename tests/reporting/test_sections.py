"""The report's sections (study.reporting.sections and the templates that say them): the
answer, the textbook's claim and the advice follow the verdicts, and say nothing a study cannot
tell."""

import re
from dataclasses import replace

import pandas as pd

from study.reporting.document import render
from study.reporting.report import Figures, Findings, report_markdown
from study.reporting.sections import (
    claim_groups,
    claim_table,
    setup_facts,
    shown_path,
    verdict_groups,
)
from study.stats.frames import StudyData
from study.stats.ranking import rank_trials
from study.stats.synthetic import OFAT, ofat_table


def _answer(ranking) -> str:
    return render("_answer.md.j2", groups=verdict_groups(ranking),
                  claim=claim_groups(claim_table(ranking)), threshold=0.01)


def test_claims_answer_and_advice_follow_the_verdicts() -> None:
    # channels and activation matter (as the textbook says), lr matters too (it says less).
    trials = ofat_table({"channels": 0.04, "activation": -0.03, "lr": -0.05}, noise=0.003,
                        seeds=8)
    ranking = rank_trials(trials, OFAT).ranking
    claims = claim_table(ranking).set_index("factor")
    assert claims.loc["lr", "agreement"] == "disagrees"  # surely in the top three
    assert claims.loc["channels", "agreement"] == "agrees"
    assert claims.loc["preprocessing", "agreement"] == "disagrees"  # surely not
    assert claims.loc["pooling", "agreement"] == "agrees"
    advice = render("_advice.md.j2", groups=verdict_groups(ranking)).splitlines()
    assert advice[0].startswith("- **lr**") and "-4.9 points (at 0.01)" in advice[0]
    assert any(a.startswith("- Leave at the baseline (shown negligible)") and "pooling" in a
               for a in advice)
    answer = _answer(ranking).splitlines()
    matter = answer.index("- **Matter** (*influential*):")
    assert answer[matter + 1].startswith("  - **lr**: -4.9 points at 0.01 (the effect between")
    assert {line.split("**")[1] for line in answer[matter + 1:matter + 4]} == {
        "lr", "channels", "activation"}
    negligible = next(line for line in answer if line.startswith("- **Do not matter**"))
    assert "pooling" in negligible and "lr" not in negligible
    claim = answer[-1]
    assert claim.startswith("- **The textbook's claim**")
    by = claims.reset_index().groupby("agreement", sort=False)["factor"].agg(", ".join)
    assert f"): agrees for {by['agrees']}; disagrees for {by['disagrees']}; see the" in claim
    assert "disagrees for lr, preprocessing;" in claim  # in rank order


def test_one_seed_study_makes_no_claims() -> None:
    trials = ofat_table({"lr": 0.05}, noise=0.01, seeds=1)
    ranking = rank_trials(trials, OFAT).ranking
    assert claim_table(ranking)["agreement"].str.startswith("cannot tell yet").all()
    advice = render("_advice.md.j2", groups=verdict_groups(ranking)).splitlines()
    assert advice[0].startswith("- No factor is shown to matter yet")
    assert all("noise cannot be measured" in a for a in advice[1:])
    answer = _answer(ranking)
    assert "- **Matter**: no factor is shown to matter yet." in answer
    assert "agrees" not in answer.replace("cannot tell yet", "")
    assert answer.count("noise cannot be measured") == len(ranking)


def test_likely_factors_are_candidates_to_confirm_in_the_answer_and_the_advice() -> None:
    # one seed per point and six at the baseline: the lr effect shows only under the pooled
    # noise, so the report lists it apart, never among the factors that matter
    ranking = rank_trials(ofat_table({"lr": -0.05}, noise=0.005, seeds=1, baseline_seeds=6),
                          OFAT).ranking
    assert ranking.set_index("factor").loc["lr", "verdict"] == "likely influential"
    answer = _answer(ranking)
    assert "- **Matter**: no factor is shown to matter yet." in answer
    assert re.search(r"^- \*\*Candidates to confirm\*\* \(\*likely\* influential, small or "
                     r"negligible:", answer, re.MULTILINE)
    assert re.search(r"^  - \*\*lr\*\* \(\*likely influential\*\): influential under the noise "
                     r"pooled", answer, re.MULTILINE)
    advice = render("_advice.md.j2", groups=verdict_groups(ranking))
    assert re.search(r"^- Confirm, \*\*lr\*\* \(\*likely influential\*\): influential .* would "
                     r"confirm it\.$", advice, re.MULTILINE)
    assert claim_table(ranking).set_index("factor").loc["lr", "agreement"] == (
        "cannot tell yet (verdict likely influential)")


def test_the_report_answers_first_and_explains_its_method_last() -> None:
    trials = ofat_table({"lr": -0.05}, noise=0.005, seeds=2)
    found = Findings(StudyData("t", OFAT, trials, pd.DataFrame()), rank_trials(trials, OFAT),
                     pd.DataFrame(), {}, pd.DataFrame(), None, None)
    report = report_markdown(found, Figures(overview="overview", influence="influence"))
    headings = re.findall(r"^## (.*)$", report, re.MULTILINE)
    assert headings[:4] == ["At a glance", "The answer", "Ranking",
                            "The textbook's claim vs this study"]
    assert headings[-2:] == ["Setup", "How the ranking is decided"]
    glance = report.split("## At a glance\n\n")[1]
    assert glance.startswith("![overview](overview.png)\n")  # the figure, then the answer


def test_paths_are_shown_relative_to_the_project_never_as_this_machine_s(tmp_path,
                                                                        monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    inside, outside = tmp_path / "data" / "cifar.tar.gz", "/srv/x/cifar10-jpeg.tar.gz"
    assert shown_path(f"CIFAR-10 from {inside} (subset: 5 train)") == \
        "CIFAR-10 from data/cifar.tar.gz (subset: 5 train)"
    assert shown_path(f"CIFAR-10 from {outside}") == "CIFAR-10 from cifar10-jpeg.tar.gz"
    spec = replace(OFAT, created={"data_source": f"CIFAR-10 from {outside}"})
    setup = render("_setup.md.j2", setup=setup_facts(spec, ofat_table({}, 0.01, seeds=1)))
    assert "- Data: CIFAR-10 from cifar10-jpeg.tar.gz (fingerprint" in setup
    assert "/srv" not in setup


def test_setup_says_how_long_the_trials_took_and_n_a_for_a_study_never_run() -> None:
    trials = ofat_table({}, 0.01, seeds=1)
    never_run = render("_setup.md.j2", setup=setup_facts(OFAT, trials))
    assert "- Time: n/a from the first trial's start" in never_run
    start = pd.Timestamp("2026-11-30 19:04:40")
    trials["started"] = [start + pd.Timedelta(seconds=5 * i) for i in range(len(trials))]
    trials["ended"] = trials["started"] + pd.Timedelta(seconds=20)
    trials.loc[0, ["started", "ended"]] = None  # one trial without times changes nothing
    trials["wall_time_s"] = 20.0
    trials.loc[len(trials) - 1, "state"] = "FAIL"  # a failed trial's time is not the study's
    finished = len(trials) - 1
    span = 5 * (finished - 1) + 20 - 5  # from trial 1's start to trial n-2's end
    setup = render("_setup.md.j2", setup=setup_facts(OFAT, trials))
    minutes, seconds = divmod(span, 60)
    assert (f"- Time: {minutes} min {seconds} s from the first trial's start to the last one's "
            f"end; {20 * finished // 60} min {20 * finished % 60} s of trials' own time, summed"
            in setup)
