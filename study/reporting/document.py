"""The report's documents: Markdown said by the templates in `templates/` (`render`), and one
self-contained HTML page of it (figures embedded as data URIs, so it opens offline). Used by
study.reporting.report and .compare; every number is shown with `fmt`, n/a where undefined.

Text from outside the code (a study database another machine writes to, the environment, the
data folder's name) must never become markup: whatever a template inserts is escaped by
`literal` unless it is `Markdown` made here (a table, whose cells are escaped, or a figure), raw
HTML is shown as text, and the HTML page inlines only the report's own figures (plain file
names in its folder), never a path a text could name.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import pandas as pd
from markdown_it import MarkdownIt


def fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None or pd.isna(value) else format(value, spec)


def percent(share: float) -> str:
    """A confidence or error rate as the report writes it: 95%, 98.3%, 1.67%."""
    return f"{100 * share:.3g}%"


# What can make inline markup in a sentence or a table cell (CommonMark escapes any ASCII
# punctuation with a backslash): escapes, code, emphasis (`_` only at a word's edge), autolinks
# and raw HTML, entities, cell borders, and a bracket that closes a link or image (`](`, `][`),
# so that "0.51 [0.49, 0.53]" and "batch_size" stay as they read.
MARKUP = re.compile(r"([\\`*<>&|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|(?<=\])[(\[])")


def literal(value: Any) -> str:
    """`value` as text that Markdown shows as written, on one line: what could make markup
    backslash-escaped, its line breaks spaces."""
    return MARKUP.sub(r"\\\1", " ".join(str(value).splitlines()))


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(literal, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(literal, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


class Markdown(str):
    """Text that is Markdown already (a table, a figure): a template inserts it as it is."""


def _inserted(value: Any) -> str:
    """How a template shows a value: Markdown as it is, anything else as `literal` text."""
    return value if isinstance(value, Markdown) else literal(value)


def table(frame: pd.DataFrame) -> Markdown:
    return Markdown(markdown_table(frame))


def points(value: float, spec: str = ".1f") -> str:
    """An accuracy difference in points of accuracy (0.012 -> 1.2); n/a where undefined."""
    return fmt(None if value is None else 100 * value, spec)  # fmt says n/a for NaN


def duration(seconds: float | None) -> str:
    """Seconds as a person reads them (42 s, 3 min 42 s, 1 h 05 min); n/a where undefined."""
    if not known(seconds):
        return "n/a"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def known(value: Any) -> bool:
    return value is not None and not pd.isna(value)


BLOCK_START = re.compile(r"\s*$|#|- |\||>|!\[|\{[%#]")  # a line that starts a block, or a tag


class UnwrappedProse(jinja2.ext.Extension):
    """Templates wrap their prose at 100 columns for reading; the Markdown they say keeps one
    line per paragraph or list item, as the reports always had. Done on the template's source,
    so no inserted value can ever start or join a block."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        lines: list[str] = []
        for line in source.split("\n"):
            previous = lines[-1].strip() if lines else ""
            tag_line = previous.startswith(("{%", "{#")) and previous.endswith(("%}", "#}"))
            if (previous and not tag_line and not previous.startswith("|")
                    and not BLOCK_START.match(line.lstrip())):
                lines[-1] = f"{lines[-1].rstrip()} {line.lstrip()}"
            else:
                lines.append(line)
        return "\n".join(lines)


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("study.reporting", "templates"), undefined=jinja2.StrictUndefined,
    finalize=_inserted, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    autoescape=False, extensions=[UnwrappedProse])
TEMPLATES.filters |= {"fmt": fmt, "table": table, "points": points, "duration": duration}
TEMPLATES.tests["known"] = known


def render(template: str, image_link: Callable[[str], str] = lambda stem: f"{stem}.png",
           **context: Any) -> str:
    """The Markdown a template of templates/ says with `context`; image_link: where each figure
    is (the file next to report.md, or the artifact the dashboard serves)."""
    def figure(stem: str | None) -> Markdown:
        return Markdown(f"![{stem}]({image_link(stem)})" if stem else "")

    text = TEMPLATES.get_template(template).render(figure=figure, **context)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"  # templates' optional blocks


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f0f3f7}
img{max-width:100%;margin:.5em 0}code{background:#f3f3f3;padding:0 .2em}
blockquote{background:#fff4d6;border-left:4px solid #e0a800;margin:1em 0;padding:.1em .8em}"""
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML shown as text


def to_html(title: str, markdown: str, figures_dir: Path, figures: list[str]) -> str:
    """The Markdown report as one self-contained page: each of its `figures` (stems of PNGs in
    figures_dir) embedded as a data URI; any other image is shown as its text."""
    own = {f"{stem}.png" for stem in figures}
    tokens = MARKDOWN.parse(markdown)
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                src = str(child.attrGet("src"))
                if src not in own:  # our stems: plain names, never a path
                    child.type, child.tag, child.attrs = "text", "", {}
                    child.content, child.children = f"[image {src} not shown]", None
                    continue
                data = (figures_dir / src).read_bytes()
                child.attrSet("src", f"data:image/png;base64,{base64.b64encode(data).decode()}")
    body = MARKDOWN.renderer.render(tokens, MARKDOWN.options, {})
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n")
