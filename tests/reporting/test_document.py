"""The report's documents (study.reporting.document): Markdown tables that survive any cell,
text from outside shown as written, and a self-contained HTML page that shows raw HTML as text
and inlines only the report's own figures."""

import pandas as pd

from study.reporting.document import literal, to_html, to_markdown

PLANTED = "x](y) ![leak](/etc/hostname) [link](http://e.x) *em* _u_ `c` <b>h</b> &amp; a|b \\"


def test_html_is_escaped_and_markdown_tables_survive_pipes(tmp_path) -> None:
    blocks = [("h2", "<script>alert(1)</script>"), ("p", "**bold** and `code` & <b>raw</b>"),
              ("table", pd.DataFrame({"reason": ["ValueError: a|b <x>"]})), ("img", "figure")]
    (tmp_path / "figure.png").write_bytes(b"\x89PNG fake")
    markdown = to_markdown("study <i>name</i>", blocks)
    assert "ValueError: a\\|b \\<x\\>" in markdown and "![figure](figure.png)" in markdown
    page = to_html("study <i>name</i>", markdown, tmp_path, ["figure"])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<strong>bold</strong>" in page and "<code>code</code>" in page
    assert "&lt;b&gt;raw" in page and "<h1>study &lt;i&gt;name&lt;/i&gt;</h1>" in page
    assert "<td>ValueError: a|b &lt;x&gt;</td>" in page  # one cell: the pipe is no column
    assert "<title>study &lt;i&gt;name&lt;/i&gt;</title>" in page
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in page and "figure.png" not in page


def test_text_from_outside_is_shown_as_written_in_sentences_and_tables(tmp_path) -> None:
    markdown = to_markdown("t", [("p", f"Data: {literal(PLANTED)}"),
                                 ("list", [f"Device: {literal(PLANTED + chr(10) + '# h')}"]),
                                 ("table", pd.DataFrame({"reason": [PLANTED]}))])
    page = to_html("t", markdown, tmp_path, [])
    assert "<img" not in page and "<a " not in page and "<em>" not in page
    assert "<code>" not in page and "<h1>h" not in page and "<b>" not in page
    shown = PLANTED.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert page.count(shown) == 3  # each exactly as written, on one line
    assert page.count("a|b") == 3


def test_only_the_reports_own_figures_are_inlined(tmp_path) -> None:
    (tmp_path / "figure.png").write_bytes(b"\x89PNG fake")
    secret = tmp_path.parent / "secret.png"
    secret.write_bytes(b"secret bytes")
    markdown = ("# t\n\n![a](figure.png)\n\n![b](../secret.png)\n\n"
                f"![c]({secret})\n\n![d](missing.png)\n")
    page = to_html("t", markdown, tmp_path, ["figure", "other"])
    assert page.count("data:image/png;base64") == 1
    assert "c2VjcmV0IGJ5dGVz" not in page  # base64 of the secret's bytes
    assert "[image ../secret.png not shown]" in page and "[image missing.png not shown]" in page
