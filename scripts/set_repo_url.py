#!/usr/bin/env python3
"""Point the book at its repository: ``python scripts/set_repo_url.py URL``.

Rewrites ``repository: url`` in ``_config.yml`` (which drives the repository and
launch buttons, Colab included) and the install cell, the first code cell of every
notebook (``intro.ipynb`` and ``chapters/*.ipynb``), which runs
``%pip install "git+URL"`` on Colab. ``tests/test_book.py`` checks that they agree.
Only the cell's source changes, so stored outputs stay valid for ``pytest --nbval``.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lenet_utils.book import install_cell_source  # noqa: E402

URL_RE = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
CONFIG_URL_RE = re.compile(r"(?m)^(repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*)(\S+)")
INSTALL_RE = re.compile(r'import lenet_utils\s*\nexcept ImportError:\s*\n\s*%pip install -q "git\+(\S+)"')


def notebooks(root: Path = ROOT) -> list[Path]:
    """The book's notebooks: the introduction (if a notebook) and every chapter."""
    intro = [root / "intro.ipynb"] if (root / "intro.ipynb").is_file() else []
    return intro + sorted((root / "chapters").glob("*.ipynb"))


def config_url(root: Path = ROOT) -> str:
    """The repository URL written in ``_config.yml``."""
    match = CONFIG_URL_RE.search((root / "_config.yml").read_text())
    if match is None:
        raise SystemExit("_config.yml has no `repository:` section with a `url:`")
    return match.group(2)


def install_cell(nb) -> nbformat.NotebookNode | None:
    """The notebook's install cell: its first code cell, if it is one."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    if code and INSTALL_RE.search(code[0].source):
        return code[0]
    return None


def set_url(url: str, root: Path = ROOT) -> list[str]:
    url = url.rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    if not URL_RE.match(url):
        raise SystemExit(f"expected https://github.com/OWNER/REPO, got {url!r}")
    changed = []
    config = root / "_config.yml"
    text = config.read_text()
    config_url(root)  # fails clearly if the section is missing
    new = CONFIG_URL_RE.sub(lambda m: m.group(1) + url, text, count=1)
    if new != text:
        config.write_text(new)
        changed.append(str(config.relative_to(root)))
    source = install_cell_source(url)
    for path in notebooks(root):
        nb = nbformat.read(path, as_version=4)
        cell = install_cell(nb)
        if cell is None:
            raise SystemExit(f"{path.relative_to(root)}: the first code cell is not the install cell "
                             f"(expected:\n{source})")
        if cell.source != source:
            cell.source = source
            nbformat.write(nb, path)
            changed.append(str(path.relative_to(root)))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the repository, https://github.com/OWNER/REPO")
    args = parser.parse_args(argv)
    changed = set_url(args.url)
    print("updated: " + (", ".join(changed) if changed else "nothing (already set)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
