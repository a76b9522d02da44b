"""The docs name what exists: every module in docs/LAYOUT.md; every relative link a file and heading that are there."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p.relative_to(ROOT / "kmq") for p in (ROOT / "kmq").rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_every_module_is_in_the_layout(module):
    layout = (ROOT / "docs" / "LAYOUT.md").read_text()
    # A codec is named in the codecs/ row by its file name; every other module by its path.
    name = module.name if module.parent.name == "codecs" else f"kmq/{module.as_posix()}"
    assert f"`{name}`" in layout


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_reach_a_file_and_its_heading(doc):
    text = _prose(doc.read_text())
    # inline links (a title after the target allowed) and reference definitions ("[ref]: target")
    links = re.findall(r"\]\((?!https?:|mailto:|#)<?([^)#\s>]+)>?(?:#([^)\s\"]+))?(?:\s+\"[^\"]*\")?\)", text)
    links += re.findall(r"^\s*\[[^\]]+\]:\s*(?!https?:|mailto:|#)<?([^#\s>]+)>?(?:#(\S+))?", text, flags=re.M)
    for target, anchor in links:
        path = (doc.parent / target).resolve()
        assert path.exists(), f"{doc.name}: {target}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path.read_text()), f"{doc.name}: {target}#{anchor}"
    for anchor in re.findall(r"\]\(#([^)\s]+)\)", text):
        assert anchor in _anchors(text), f"{doc.name}: #{anchor}"


def _prose(markdown: str) -> str:
    """The markdown without its fenced code blocks, whose `# ...` lines are no headings and links no links."""
    return re.sub(r"^```.*?^```[^\n]*$", "", markdown, flags=re.M | re.S)


def _anchors(markdown: str) -> set[str]:
    # GitHub's rule: lower case, punctuation but hyphens and spaces dropped, spaces to hyphens.
    heads = re.findall(r"^#+ (.+)$", _prose(markdown), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}
