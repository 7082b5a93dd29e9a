"""The report's documents (study.reporting.document): templates that insert text from outside
as written and tables that survive any cell, prose that templates wrap kept on one line, and a
self-contained HTML page that shows raw HTML as text and inlines only the report's own
figures."""

import pandas as pd

from study.reporting.document import TEMPLATES, Markdown, table, to_html

PLANTED = "x](y) ![leak](/etc/hostname) [link](http://e.x) *em* _u_ `c` <b>h</b> &amp; a|b \\"


def test_html_is_escaped_and_markdown_tables_survive_pipes(tmp_path) -> None:
    template = TEMPLATES.from_string(
        "# study <i>name</i>\n\n## <script>alert(1)</script>\n\n**bold** and `code` & <b>raw</b>"
        "\n\n{{ reasons|table }}\n\n{{ figure }}\n")
    (tmp_path / "figure.png").write_bytes(b"\x89PNG fake")
    markdown = template.render(reasons=pd.DataFrame({"reason": ["ValueError: a|b <x>"]}),
                               figure=Markdown("![figure](figure.png)"))
    assert "ValueError: a\\|b \\<x\\>" in markdown and "![figure](figure.png)" in markdown
    page = to_html("study <i>name</i>", markdown, tmp_path, ["figure"])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<strong>bold</strong>" in page and "<code>code</code>" in page
    assert "&lt;b&gt;raw" in page and "<h1>study &lt;i&gt;name&lt;/i&gt;</h1>" in page
    assert "<td>ValueError: a|b &lt;x&gt;</td>" in page  # one cell: the pipe is no column
    assert "<title>study &lt;i&gt;name&lt;/i&gt;</title>" in page
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in page and "figure.png" not in page


def test_text_from_outside_is_shown_as_written_in_sentences_and_tables(tmp_path) -> None:
    markdown = TEMPLATES.from_string(
        "# t\n\nData: {{ planted }}\n\n- Device: {{ device }}\n\n{{ reasons|table }}\n"
    ).render(planted=PLANTED, device=PLANTED + "\n# h", reasons=pd.DataFrame({"reason": [PLANTED]}))
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


def test_wrapped_prose_is_one_line_and_blocks_stay_blocks() -> None:
    template = TEMPLATES.from_string(
        "A sentence wrapped\nover {{ n }} lines\n  and indented.\n\n- an item\n  continued\n"
        "- another\n{% if n %}\n| a |\n|---|\n{% endif %}\n> a note\nwrapped\n")
    assert template.render(n=3) == ("A sentence wrapped over 3 lines and indented.\n\n"
                                    "- an item continued\n- another\n| a |\n|---|\n"
                                    "> a note wrapped\n")
    assert table(pd.DataFrame({"a": ["x"]})) == "| a |\n|---|\n| x |"
