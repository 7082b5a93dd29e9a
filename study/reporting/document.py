"""The report's documents: a list of blocks written as Markdown, and as one self-contained HTML
page (figures embedded as data URIs, so it opens offline). Used by study.reporting.report and
study.reporting.compare; every number is shown with `fmt`, which says n/a where it is undefined.

Text from outside the code (a study database another machine writes to, the environment, the
data folder's name) must never become markup: every table cell is escaped here, text inserted
into a sentence goes through `literal`, raw HTML is shown as text, and the HTML page inlines only
the report's own figures (plain file names in its folder), never a path a text could name.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from markdown_it import MarkdownIt

Block = tuple[str, Any]  # (kind, content): h2, p, note, list, table (DataFrame), img (stem)


def fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None or pd.isna(value) else format(value, spec)


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
            parts.append(markdown_table(content))
        else:
            parts.append(f"![{content}]({image_link(content)})")
    return "\n\n".join(parts) + "\n"


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
