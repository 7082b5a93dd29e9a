import pandas as pd

from study.analysis import seed_noise
from study.document import to_html, to_markdown
from study.report import claim_table, recommendations
from study.stats import analyse
from tests.tables import OFAT, ofat_table


def test_html_is_escaped_and_markdown_tables_survive_pipes(tmp_path) -> None:
    blocks = [("h2", "<script>alert(1)</script>"), ("p", "**bold** and `code` & <b>raw</b>"),
              ("table", pd.DataFrame({"reason": ["ValueError: a|b <x>"]})), ("img", "figure")]
    (tmp_path / "figure.png").write_bytes(b"\x89PNG fake")
    markdown = to_markdown("study <i>name</i>", blocks)
    assert "ValueError: a\\|b <x>" in markdown and "![figure](figure.png)" in markdown
    page = to_html("study <i>name</i>", markdown, tmp_path)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<strong>bold</strong>" in page and "<code>code</code>" in page
    assert "&lt;b&gt;raw" in page and "<h1>study &lt;i&gt;name&lt;/i&gt;</h1>" in page
    assert "<td>ValueError: a|b &lt;x&gt;</td>" in page  # one cell: the pipe is no column
    assert "<title>study &lt;i&gt;name&lt;/i&gt;</title>" in page
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in page and "figure.png" not in page


def test_claims_and_advice_follow_the_verdicts() -> None:
    # channels and activation matter (as the textbook says), lr matters too (it says less).
    trials = ofat_table({"channels": 0.04, "activation": -0.03, "lr": -0.05}, noise=0.003,
                        seeds=8)
    ranking = analyse(trials, OFAT, seed_noise(trials)).ranking
    claims = claim_table(ranking).set_index("factor")
    assert claims.loc["lr", "agreement"] == "disagrees"  # surely in the top three
    assert claims.loc["channels", "agreement"] == "agrees"
    assert claims.loc["preprocessing", "agreement"] == "disagrees"  # surely not
    assert claims.loc["pooling", "agreement"] == "agrees"
    advice = recommendations(ranking)
    assert advice[0].startswith("**lr**") and "-4.9 points (at 0.01)" in advice[0]
    assert any(a.startswith("Leave at the baseline (shown negligible)") and "pooling" in a
               for a in advice)


def test_one_seed_study_makes_no_claims() -> None:
    trials = ofat_table({"lr": 0.05}, noise=0.01, seeds=1)
    ranking = analyse(trials, OFAT, seed_noise(trials)).ranking
    assert claim_table(ranking)["agreement"].str.startswith("cannot tell yet").all()
    advice = recommendations(ranking)
    assert advice[0].startswith("No factor is shown to matter yet")
    assert all("noise cannot be measured" in a for a in advice[1:])
