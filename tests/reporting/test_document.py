"""The report's documents (study.reporting.document): Markdown tables that survive any cell,
and a self-contained HTML page that shows raw HTML as text."""

import pandas as pd

from study.reporting.document import to_html, to_markdown


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
