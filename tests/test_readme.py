"""The README's in-page links point at headings that exist (GitHub's anchor rules), and its file links at files."""

import re
import unicodedata
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation and symbols dropped, spaces to hyphens."""
    kept = "".join(c for c in heading.lower()
                   if c in " -" or unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "Pc")
    return kept.replace(" ", "-")


def test_github_anchor_hand_made():
    assert github_anchor("Training CNNs for γ (`diffnorm train`)") == "training-cnns-for-γ-diffnorm-train"
    assert github_anchor("Results (50 test fields, 180 × 360, M = 10)") == "results-50-test-fields-180--360-m--10"


def test_readme_links_resolve():
    text = README.read_text()
    body = re.sub(r"```.*?```", "", text, flags=re.S)  # headings inside code blocks are comments
    anchors = {github_anchor(m.group(1).strip()) for m in re.finditer(r"^#+ (.+)$", body, flags=re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", body)
    in_page = [link[1:] for link in links if link.startswith("#")]
    assert in_page, "the README has no table of contents"
    missing = [a for a in in_page if a not in anchors]
    assert not missing, f"README links to headings that do not exist: {missing}"
    files = [link for link in links if not link.startswith(("#", "http")) and not link.startswith("../")]
    absent = [f for f in files if not (README.parent / f.split("#")[0]).exists()]
    assert not absent, f"README links to files that do not exist: {absent}"
