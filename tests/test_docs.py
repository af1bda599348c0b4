"""The documentation: the site builds with `mkdocs build --strict` (a broken link or anchor, or a page under docs/
left out of mkdocs.yml's nav, fails), the README stays a short entry that keeps the two newcomer commands and links
only to pages and anchors that exist, and no tracker words reach what users read."""

import os
import re
import subprocess
import sys

import pytest
import yaml

from sustainable_ipa.config import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"

# The README's two commands, word for word: `make run` and `make test` are what a newcomer types first.
NEWCOMER_COMMANDS = (
    "make run    # creates .venv, installs everything, runs the default adaptation on the embedded sample "
    "(~2 min once installed)",
    "make test   # creates .venv, installs everything, runs the whole test suite (two pytest workers; 7–10 min on a "
    "2-core VM once installed)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as CI builds it (make docs-check), into a temporary folder."""
    out = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(PROJECT_ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=PROJECT_ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}{done.stderr}"
    return out


def nav_pages(nav) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    items = nav.values() if isinstance(nav, dict) else nav
    return set().union(*(nav_pages(item) for item in items))


def test_the_docs_build_strict_with_every_page_in_the_nav(site):
    nav = nav_pages(yaml.safe_load((PROJECT_ROOT / "mkdocs.yml").read_text())["nav"])
    assert nav == {p.name for p in DOCS.glob("*.md")}
    for page in nav:
        built = site / ("index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html")
        assert built.is_file(), page


def test_the_readme_links_into_the_docs_resolve(site):
    links = re.findall(r"\]\(docs/([\w-]+\.md)?(?:#([\w-]+))?\)", README.read_text())
    assert len(links) >= 10
    for page, anchor in links:
        if not page:  # the folder itself
            continue
        built = site / ("index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html")
        assert built.is_file(), f"README links to docs/{page}, which the site lacks"
        if anchor:
            assert f'id="{anchor}"' in built.read_text(), f"README links to docs/{page}#{anchor}: no such anchor"


def test_the_readme_is_short_and_keeps_the_two_newcomer_commands():
    lines = README.read_text().splitlines()
    assert len(lines) < 260, f"README.md has {len(lines)} lines: move the depth into docs/"
    for command in NEWCOMER_COMMANDS:
        assert command in lines, f"the README lost its newcomer command: {command.split('#')[0].strip()}"
    home = (DOCS / "index.md").read_text().splitlines()  # the site's home page shows the same two
    assert all(command in home for command in NEWCOMER_COMMANDS)
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "\nrun: setup" in makefile and "\ntest: setup" in makefile


def test_no_tracker_words_where_users_read():
    tracker = re.compile(r"\bissues? #?\d+|\bitems? \d+\b", re.IGNORECASE)
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        found = tracker.findall(path.read_text())
        assert not found, f"{path.relative_to(PROJECT_ROOT)} names the tracker: {found}"
