"""Small helpers the book's notebooks share: gluing numbers into the prose, a common
setup cell, and Markdown tables computed from code.

The book is built with Jupyter Book (myst-nb), where ``glue`` stores a value in the
notebook's outputs so the text can show it with ``{glue:text}`name```. On Colab or a
plain Jupyter install there is no myst-nb: ``glue`` then shows the value if asked to
and otherwise does nothing, so every notebook runs unchanged everywhere.

Writing a chapter so that ``pytest --nbval`` (strict) passes on a re-run:

- nbval 0.11 compares, per cell, the text of stdout/stderr streams (consecutive chunks
  merged) and every MIME type of display/result outputs except ``image/png`` and
  ``image/jpeg``: so ``text/plain`` (``<Figure size 600x300 with 2 Axes>``),
  ``text/markdown``, ``text/html``, SVG and glued values
  (``application/papermill.record/text/plain``) must be identical. It ignores metadata
  and execution counts. No sanitizing file is used: outputs are made deterministic.
- Print and glue rounded numbers, never memory addresses, timings or progress bars.
- Do not end a cell with ``;`` to hide its value: nbval runs cells with
  ``store_history=False`` and IPython then ignores the semicolon. Assign the value
  (``fig = show_digits(...)``) or end a plotting cell with ``plt.show()``.
- Put ``%matplotlib inline`` in the setup cell (CI sets ``MPLBACKEND=Agg``, which would
  otherwise silence every figure under nbval), then call :func:`chapter_setup`.
- Refresh the stored outputs with ``python scripts/run_chapters.py chapters/NN_x.ipynb``.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

try:  # myst-nb is part of the book's toolchain, not of the package's dependencies
    from myst_nb import glue as _myst_glue
except ImportError:  # pragma: no cover - depends on the environment
    _myst_glue = None

#: The first code cell of every notebook, for Colab and other fresh environments. The
#: URL is the ``repository: url`` of ``_config.yml``; ``scripts/set_repo_url.py``
#: rewrites both, and ``tests/test_book.py`` checks that they agree.
INSTALL_CELL_TEMPLATE = """\
# On Colab or any fresh environment: install this book's package if it is missing.
try:
    import lenet_utils
except ImportError:
    %pip install -q "git+{url}"
"""


def install_cell_source(url: str) -> str:
    """The install cell for a repository at ``url`` (``https://github.com/OWNER/REPO``)."""
    return INSTALL_CELL_TEMPLATE.format(url=url.rstrip("/")).rstrip("\n")


#: Figure defaults shared by every chapter: sizes are set per figure, these fix the look.
MATPLOTLIB_DEFAULTS = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.figsize": (6.0, 3.5),
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.grid": False,
    "image.interpolation": "nearest",
    "image.cmap": "gray_r",
}


def _plain(value: Any) -> Any:
    """0-d tensors and NumPy scalars as Python numbers, so the glued text is ``0.25``
    and not ``tensor(0.2500)`` and format specs such as ``:.2f`` work on it."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return item()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's ``{glue:text}`` roles.

    Without myst-nb (Colab) nothing is stored; ``display=True`` still shows the value.
    Returns nothing, so a cell may end with it. Glue numbers (rounded to the digits the
    text shows, so that last-bit differences between machines do not change the stored
    output) and short strings, not figures: ``pytest --nbval`` skips plain PNG outputs
    but would compare a glued figure's PNG bytes.
    """
    value = _plain(value)
    if _myst_glue is not None:
        _myst_glue(name, value, display=display)
    elif display:
        try:
            from IPython.display import display as _display
        except ImportError:  # pragma: no cover
            print(value)
        else:
            _display(value)


def chapter_setup(seed: int = 0) -> None:
    """Seed Python, NumPy and torch and set the book's matplotlib defaults.

    Returns nothing, so a cell may end with it without printing anything (a returned
    object would be shown with its memory address, which changes from run to run).
    Call it after ``%matplotlib inline``, which would otherwise reset some defaults.
    """
    import matplotlib as mpl

    from .runtime import seed_everything

    mpl.rcParams.update(MATPLOTLIB_DEFAULTS)
    seed_everything(seed)


def _cell(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                   align: str | None = None):
    """A Markdown table (an ``IPython.display.Markdown`` object, so a cell ending with
    it renders as a table in Jupyter and in the book). Integers get thousands
    separators. ``align`` is one character per column: ``l``, ``r`` or ``c``."""
    from IPython.display import Markdown

    headers = list(headers)
    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers):
        raise ValueError(f"align has {len(align)} characters for {len(headers)} columns")
    rule = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(rule[a] for a in align) + "|"]
    for row in rows:
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(headers)} columns")
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return Markdown("\n".join(lines))
