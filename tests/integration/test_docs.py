"""The front door and the docs site, read as files (no Ray, no build): the README stays short and shows the commands a
newcomer needs, every relative link lands on a file, every page is in the site's nav, and the benchmarks page is one
table of dated, one-line rows. `make docs` (run by `make test`) builds the site with ``--strict`` on top of this, which
also checks anchors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from rlportfolio.cli import SUBCOMMANDS
from tests.support.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks and tables."""
    return [line for line in FENCE.sub("", text).splitlines() if not line.lstrip().startswith("|")]


def relative_links(text: str) -> list[str]:
    """Link and image targets outside code, without web addresses and in-page anchors."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    targets = (match.group(1) for match in LINK.finditer(text))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")]


def nav_pages(nav) -> list[str]:
    """Every page file the mkdocs nav names, however nested."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return [page for item in nav for page in nav_pages(item)]


def table_cells(row: str) -> list[str]:
    """A markdown table row's cells (a backslash-escaped pipe stays inside its cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def test_readme_is_at_most_150_lines_with_no_prose_line_over_300_characters():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    long = [line[:80] for line in prose_lines(text) if len(line) > 300]
    assert not long, long


def test_readme_shows_the_demo_the_tests_and_the_inner_loop():
    code = "\n".join(block.group(0) for block in FENCE.finditer(README.read_text()))
    for command in ("make demo", "make test ", "make test-fast"):
        assert command in code, command


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_relative_link_resolves_to_a_file(page: Path):
    missing = []
    for target in relative_links(page.read_text()):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).resolve().is_file():
            missing.append(target)
    assert not missing, f"{page.relative_to(REPO_ROOT)}: {missing}"


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs" and config.get("strict") is True
    nav = nav_pages(config["nav"])
    assert sorted(nav) == sorted(p.name for p in PAGES), "pages and nav differ"
    assert len(nav) == len(set(nav)), "a page appears twice in the nav"


def test_benchmarks_is_one_table_of_five_filled_cells_with_an_iso_date():
    lines = (DOCS / "benchmarks.md").read_text().splitlines()
    rows = [line for line in lines if line.lstrip().startswith("|")]
    assert table_cells(rows[0]) == ["figure", "command", "result", "date", "machine"]
    assert set(table_cells(rows[1])) <= {"---", ":---", "---:", ":---:"}
    first, last = lines.index(rows[0]), lines.index(rows[-1])
    assert last - first + 1 == len(rows), "one table: no other lines between its rows"
    assert len(rows) > 2
    for row in rows[2:]:
        cells = table_cells(row)
        assert len(cells) == 5 and all(cells), row[:120]
        assert ISO_DATE.match(cells[3]), f"date {cells[3]!r}: {row[:80]}"


def test_changelog_entries_are_dated_newest_first():
    dates = re.findall(r"^## (\S+)\s*$", (REPO_ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert dates and all(ISO_DATE.match(d) for d in dates), dates
    assert dates == sorted(dates, reverse=True) and len(set(dates)) == len(dates)


def test_every_rlportfolio_command_in_the_docs_names_a_real_subcommand():
    used = set()
    for page in [README, *PAGES]:
        used |= set(re.findall(r"(?:^|[\s`(\"])(?:\.venv/bin/)?rlportfolio ([a-z][a-z-]*)", page.read_text()))
    assert used, "no rlportfolio command found"
    assert used <= set(SUBCOMMANDS), used - set(SUBCOMMANDS)
