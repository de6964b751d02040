#!/usr/bin/env python3
"""Re-execute the book's notebooks in place: ``python scripts/run_chapters.py [NOTEBOOK ...]``.

Without arguments: ``intro.ipynb`` and every ``chapters/*.ipynb``, in order. Each runs
top to bottom in a fresh ``python3`` kernel (papermill), one at a time, in its own
folder (so chapters run with cwd ``chapters/``), and its wall time is printed. The
result replaces the notebook only if every cell succeeded; a failed run is kept in
``_build/failed/`` for inspection. Papermill's timing metadata is removed, so a re-run
changes only what the code computes and ``pytest --nbval`` compares stored with fresh
outputs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
FAILED = ROOT / "_build" / "failed"


def default_notebooks() -> list[Path]:
    intro = [ROOT / "intro.ipynb"] if (ROOT / "intro.ipynb").is_file() else []
    return intro + sorted((ROOT / "chapters").glob("*.ipynb"))


def merge_streams(outputs: list) -> list:
    """Join consecutive stdout (or stderr) chunks into one output. How a cell's printing
    is split into messages varies from run to run; merged, a re-run that prints the same
    text stores the same notebook (nbval merges them the same way before comparing)."""
    merged: list = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged
                and merged[-1].get("output_type") == "stream" and merged[-1].name == out.name):
            merged[-1].text += out.text
        else:
            merged.append(out)
    return merged


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop papermill's per-run metadata (timestamps, durations, paths) and merge
    split stream outputs."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    return nb


def check(nb: nbformat.NotebookNode, name: str) -> None:
    """What strict nbval and tests/test_book.py need: counts 1..n, no errors."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    if counts != list(range(1, len(code) + 1)):
        raise RuntimeError(f"{name}: execution counts {counts}, expected 1..{len(code)}")
    for i, cell in enumerate(code):
        if any(o.output_type == "error" for o in cell.outputs):
            raise RuntimeError(f"{name}: code cell {i} has an error output")


def run(path: Path, parameters: dict, kernel: str) -> float:
    import papermill as pm

    path = path.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / path.name
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(path), str(out), parameters=parameters or None,
                                cwd=str(path.parent), kernel_name=kernel, progress_bar=False,
                                log_output=False, request_save_on_cell_execute=False)
        except Exception:
            FAILED.mkdir(parents=True, exist_ok=True)
            if out.is_file():
                shutil.copy(out, FAILED / path.name)
                print(f"  failed run kept in {(FAILED / path.name).relative_to(ROOT)}", file=sys.stderr)
            raise
        seconds = time.perf_counter() - start
        nb = clean(nbformat.read(out, as_version=4))
        check(nb, path.name)
        nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: intro.ipynb and chapters/*.ipynb)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="override a value of the `parameters` cell (papermill adds an "
                             "injected cell; the book's stored outputs use the defaults)")
    parser.add_argument("--kernel", default="python3")
    args = parser.parse_args(argv)

    # the kernels inherit this: the same hashing (set order) as `pytest --nbval` in CI
    os.environ.setdefault("PYTHONHASHSEED", "0")
    parameters = {}
    for name, value in args.parameter:
        try:
            parameters[name] = int(value)
        except ValueError:
            parameters[name] = value
    notebooks = args.notebooks or default_notebooks()
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        parser.error("no such notebook: " + ", ".join(missing))
    total, failed = 0.0, []
    for path in notebooks:
        print(f"{path}: running ...", flush=True)
        try:
            seconds = run(path, parameters, args.kernel)
        except Exception as err:  # report and go on with the next notebook
            print(f"{path}: FAILED: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                  flush=True)
            failed.append(str(path))
            continue
        total += seconds
        print(f"{path}: {seconds:.1f} s", flush=True)
    print(f"{len(notebooks) - len(failed)} of {len(notebooks)} notebooks ran in {total:.1f} s")
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
