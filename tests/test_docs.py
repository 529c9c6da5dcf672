"""The README's links into `docs/` land on a file and, where they name one, a heading of it."""

import re

from conftest import REPO


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_into_docs_land_on_a_heading():
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", (REPO / "README.md").read_text())
    assert links, "the README links to no file under docs/"
    for path, anchor in links:
        assert (REPO / path).is_file(), path
        if anchor:
            headings = re.findall(r"(?m)^#+ (.+)$", (REPO / path).read_text())
            assert anchor in {_anchor(h) for h in headings}, f"{path}#{anchor}"
