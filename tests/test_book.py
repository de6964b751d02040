"""The book's structure: configuration, table of contents, and notebook hygiene.

These read files only (no kernel). Whether the stored outputs are reproducible is
``pytest --nbval chapters``'s job; refresh them with ``python scripts/run_chapters.py``.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from lenet_utils.book import install_cell_source

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import set_repo_url  # noqa: E402

NOTEBOOKS = set_repo_url.notebooks(ROOT)
CHAPTER_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_files(node) -> list[str]:
    """Every ``file:`` entry of the table of contents, in order."""
    found = []
    if isinstance(node, dict):
        if "file" in node:
            found.append(str(node["file"]))
        for value in node.values():
            found += _toc_files(value)
    elif isinstance(node, list):
        for value in node:
            found += _toc_files(value)
    return found


def _strip_suffix(name: str) -> str:
    return re.sub(r"\.(ipynb|md)$", "", name)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in chapters/"


def test_repository_and_launch_buttons():
    config = _config()
    url = config["repository"]["url"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    assert url == set_repo_url.config_url(ROOT)
    assert config["repository"].get("branch"), "repository.branch is not set"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["html"]["use_repository_button"] is True
    assert config["execute"]["execute_notebooks"] == "off"
    assert "references.bib" in config["bibtex_bibfiles"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_install_cell_matches_repository_url(path):
    nb = _read(path)
    cell = set_repo_url.install_cell(nb)
    assert cell is not None, f"{_id(path)}: the first code cell must be the install cell"
    expected = install_cell_source(set_repo_url.config_url(ROOT))
    assert cell.source == expected, (f"{_id(path)}: install cell differs from _config.yml's URL; "
                                     "run python scripts/set_repo_url.py URL")
    assert not cell.outputs, f"{_id(path)}: the install cell should have no output"


def test_toc_lists_every_chapter_and_nothing_else():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [_strip_suffix(f) for f in _toc_files(toc)]
    assert len(entries) == len(set(entries)), f"duplicate entries in _toc.yml: {entries}"
    root = _strip_suffix(toc["root"])
    for entry in [root, *entries]:
        assert any((ROOT / (entry + s)).is_file() for s in (".ipynb", ".md")), \
            f"_toc.yml lists {entry}, but neither {entry}.ipynb nor {entry}.md exists"
    chapters = sorted(_strip_suffix(p.relative_to(ROOT).as_posix())
                      for p in (ROOT / "chapters").iterdir() if p.suffix in (".ipynb", ".md"))
    listed = [e for e in entries if e.startswith("chapters/")]
    missing = sorted(set(chapters) - set(listed))
    assert not missing, f"chapters not listed in _toc.yml: {missing}"
    assert listed == sorted(listed), f"_toc.yml lists the chapters out of order: {listed}"
    for name in chapters:
        assert CHAPTER_NAME.match(Path(name).name), f"{name}: chapter files are named NN_name"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_parameters_cell(path):
    cells = [c for c in _read(path).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{_id(path)}: expected one cell tagged `parameters`, found {len(cells)}"
    assert cells[0].cell_type == "code"
    assert re.search(r"(?m)^seed\s*=", cells[0].source), f"{_id(path)}: the parameters cell sets no seed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_stored_run_is_complete_and_clean(path):
    nb = _read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), \
        f"{_id(path)}: execution counts {counts}; re-run it with scripts/run_chapters.py"
    for i, cell in enumerate(code):
        assert not any(o.output_type == "error" for o in cell.outputs), f"{_id(path)}: cell {i} failed"
        tags = cell.metadata.get("tags", [])
        assert "injected-parameters" not in tags, \
            f"{_id(path)}: stored run used papermill parameters; re-run without -p"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", \
        f"{_id(path)}: kernelspec must be python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_figures_shown_inline_everywhere(path):
    """`%matplotlib inline` explicitly, so figures are outputs even when the environment
    sets MPLBACKEND=Agg (as the CI does), and nbval sees what was stored."""
    sources = "\n".join(c.source for c in _read(path).cells if c.cell_type == "code")
    if "plt." in sources or "plotting" in sources or "show_" in sources:
        assert re.search(r"(?m)^%matplotlib inline\s*$", sources), \
            f"{_id(path)}: add `%matplotlib inline` to the setup cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_no_semicolon_to_hide_output(path):
    """nbval runs cells with store_history=False, and IPython then ignores a final `;`:
    the output hidden in the stored run reappears under test. Assign the value instead
    (`fig = show_digits(...)`) or end a plotting cell with `plt.show()`."""
    for i, cell in enumerate(c for c in _read(path).cells if c.cell_type == "code"):
        lines = [ln for ln in cell.source.rstrip().splitlines() if ln.strip()]
        assert not (lines and lines[-1].rstrip().endswith(";")), \
            f"{_id(path)}: code cell {i} ends with `;`"


def _cited_keys(text: str) -> set[str]:
    keys = set()
    for match in re.finditer(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text):
        keys.update(k.strip() for k in match.group(1).split(","))
    return keys


def test_citations_exist_in_bibliography():
    bib = (ROOT / "references.bib").read_text()
    known = set(re.findall(r"@\w+\{([^,\s]+),", bib))
    sources = [p for p in ROOT.glob("*.md") if p.name != "README.md"] + sorted(ROOT.glob("chapters/*.md"))
    cited = {}
    for path in sources:
        for key in _cited_keys(path.read_text()):
            cited.setdefault(key, _id(path))
    for path in NOTEBOOKS:
        text = "\n".join(c.source for c in _read(path).cells if c.cell_type == "markdown")
        for key in _cited_keys(text):
            cited.setdefault(key, _id(path))
    unknown = {k: where for k, where in cited.items() if k not in known}
    assert not unknown, f"cited but not in references.bib: {unknown}"
