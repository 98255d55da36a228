"""The docs stay reachable: README.md is short and its links resolve, and every reference from the
code and configs to a docs page (`docs/<page>.md, "<heading>"`) names a page and a heading that
exist. `mkdocs build --strict` (make test) checks the links inside docs/."""

import re
from pathlib import Path

from markdown.extensions.toc import slugify

from tests.conftest import ROOT

DOCS = ROOT / "docs"
# Where references to the docs live: code, tests, rules, configs, benchmarks, the Makefile.
SOURCES = ("src", "tests", "workflow", "config", "benchmarks")
SUFFIXES = {".py", ".yaml", ".yml", ".smk", ".sh", ".md", ".rst", ".toml"}


def _headings(page: Path) -> list[str]:
    """The page's heading texts, without the #s and without code backticks."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [h.replace("`", "") for h in re.findall(r"^#{1,6} (.+?)\s*$", text, re.MULTILINE)]


def _referring_files() -> list[Path]:
    files = [ROOT / "Makefile", ROOT / "Snakefile"]
    for top in SOURCES:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in SUFFIXES and p.is_file()]
    return files


def _flat(text: str) -> str:
    """Comment and docstring lines joined, so that a reference wrapped over lines reads whole."""
    return re.sub(r"\s*\n\s*(?:#+\s*)?", " ", text)


def test_readme_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), link
        if anchor:
            assert anchor in {slugify(h, "-") for h in _headings(target)}, link


def test_references_to_docs_pages_name_existing_headings() -> None:
    pages = {p.name for p in DOCS.glob("*.md")}
    found = 0
    for path in _referring_files():
        text = _flat(path.read_text(errors="replace"))
        for page in re.findall(r"\bdocs/([\w-]+\.md)\b", text):
            assert page in pages, f"{path.relative_to(ROOT)}: docs/{page} does not exist"
        for page, heading in re.findall(r'\bdocs/([\w-]+\.md), "([^"]+)"', text):
            headings = _headings(DOCS / page)
            assert any(h.startswith(heading) for h in headings), (
                f'{path.relative_to(ROOT)}: docs/{page} has no heading "{heading}"'
            )
            found += 1
    assert found  # the pattern still matches the references the repository holds
