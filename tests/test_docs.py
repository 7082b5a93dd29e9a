"""The README and docs/ as a newcomer meets them: the README short, every docs page linked from
it, and every relative link and anchor in them leading somewhere."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside code blocks and code spans, where a link is a link."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"(?ms)^```.*?^```", "", text))


def _anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them."""
    headings = re.findall(r"^#+ (.*)$", _prose(page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{page.name}: {target} (no such file)")
        elif anchor and anchor not in _anchors(linked):
            broken.append(f"{page.name}: {target} (no such heading)")
    return broken


def test_every_relative_link_in_the_readme_and_the_docs_resolves() -> None:
    assert len(PAGES) > 5
    assert [b for page in PAGES for b in broken_links(page)] == []


def test_a_broken_link_or_anchor_is_found(tmp_path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A heading, with punctuation!\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-heading-with-punctuation) [ok](https://x.org/none.md) "
                    "`[code](none.md)` [gone](none.md) [bad](other.md#nowhere) [self](#page)\n"
                    "\n# Page\n")
    assert broken_links(page) == ["page.md: none.md (no such file)",
                                  "page.md: other.md#nowhere (no such heading)"]


def test_the_readme_is_short_links_every_page_and_its_picture_is_small() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = {target.partition("#")[0] for target in LINK.findall(_prose(readme))}
    assert {f"docs/{page.name}" for page in PAGES[1:]} <= linked
    pictures = [ROOT / t for t in linked if t.endswith(".png")]
    assert pictures and all(p.stat().st_size < 200_000 for p in pictures)
