"""Figures the chapters share: digits, feature maps, kernels, tables, curves.

Every function draws on a new figure (or given axes) and returns the figure, so a
notebook cell ends with the call and shows one picture.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor


def _grid(n: int, cols: int) -> tuple[int, int]:
    cols = min(cols, n)
    return -(-n // cols), cols


def show_images(images: Tensor, titles: Sequence[str] | None = None, cols: int = 10,
                size: float = 1.1, cmap: str = "gray_r", vmin: float | None = None,
                vmax: float | None = None, suptitle: str | None = None) -> plt.Figure:
    """A grid of 2-D images (N, H, W) or (N, 1, H, W); ink dark on white by default."""
    images = images.detach().cpu()
    if images.dim() == 4:
        images = images[:, 0]
    rows, cols = _grid(len(images), cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_digits(x: Tensor, labels: Sequence[int] | Tensor | None = None, cols: int = 10,
                predictions: Sequence[int] | Tensor | None = None) -> plt.Figure:
    """Digits in the paper's scaling (-0.1 background, 1.175 ink), titled with labels
    and, if given, predictions as "true->predicted"."""
    titles = None
    if labels is not None:
        labels = [int(v) for v in labels]
        if predictions is None:
            titles = [str(v) for v in labels]
        else:
            titles = [f"{t}->{int(p)}" for t, p in zip(labels, predictions)]
    return show_images(x, titles, cols=cols, vmin=-0.1, vmax=1.175)


def show_feature_maps(maps: Tensor, title: str | None = None, cols: int = 8,
                      size: float = 1.3) -> plt.Figure:
    """One sample's feature maps (C, H, W) on a shared symmetric colour scale."""
    maps = maps.detach().cpu()
    if maps.dim() == 4:
        maps = maps[0]
    bound = float(maps.abs().max()) or 1.0
    titles = [f"map {i}" for i in range(len(maps))]
    return show_images(maps, titles, cols=cols, size=size, cmap="RdBu_r", vmin=-bound,
                       vmax=bound, suptitle=title)


def _draw_kernel(ax: plt.Axes, kernel: Tensor, bound: float, frame_absent: bool = True) -> None:
    """One kernel on a symmetric colour scale; an all-zero (absent) kernel is drawn grey."""
    ax.set_xticks([]), ax.set_yticks([])
    if torch.count_nonzero(kernel):
        ax.imshow(kernel, cmap="RdBu_r", vmin=-bound, vmax=bound)
        return
    ax.set_facecolor("0.92")
    for spine in ax.spines.values():
        spine.set_visible(frame_absent)


def show_kernels(weight: Tensor, title: str | None = None, size: float = 0.9) -> plt.Figure:
    """Convolution kernels (out, in, k, k) as a grid: one row per output map; kernels
    that are all zero (absent connections) are left blank."""
    w = weight.detach().cpu()
    out_maps, in_maps = w.shape[:2]
    bound = float(w.abs().max()) or 1.0
    fig, axes = plt.subplots(out_maps, in_maps, figsize=(size * in_maps, size * out_maps), squeeze=False)
    for o in range(out_maps):
        for i in range(in_maps):
            ax = axes[o, i]
            _draw_kernel(ax, w[o, i], bound)
            if o == 0:
                ax.set_title(f"in {i}", fontsize=7)
            if i == 0:
                ax.set_ylabel(f"out {o}", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_connection_table(mask: Tensor, ax: plt.Axes | None = None) -> plt.Figure:
    """Table I: rows are S2 maps, columns C3 maps, an X where they are connected."""
    mask = mask.detach().cpu().bool()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    ax.imshow(mask.T, cmap="Greys", vmin=0, vmax=1.6, aspect="equal")
    for c3, s2 in mask.nonzero().tolist():
        ax.text(c3, s2, "X", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(mask.shape[0])), ax.set_yticks(range(mask.shape[1]))
    ax.set_xlabel("C3 feature map"), ax.set_ylabel("S2 feature map")
    ax.set_title("Table I: which S2 maps feed each C3 map")
    return ax.figure


def plot_confusion(matrix: Tensor, ax: plt.Axes | None = None) -> plt.Figure:
    """Confusion matrix (true rows, predicted columns), off-diagonal counts written in."""
    m = matrix.detach().cpu()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    off = m.clone().fill_diagonal_(0)
    ax.imshow(off, cmap="Reds")
    for t in range(m.shape[0]):
        for p in range(m.shape[1]):
            if m[t, p]:
                ax.text(p, t, int(m[t, p]), ha="center", va="center", fontsize=7,
                        color="0.5" if t == p else "black")
    ax.set_xticks(range(m.shape[1])), ax.set_yticks(range(m.shape[0]))
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    return ax.figure


def plot_history(epochs: Sequence[dict], paper_test: float | None = None,
                 paper_train: float | None = None, ax: plt.Axes | None = None) -> plt.Figure:
    """Training and test error (%) per pass, with the paper's final figures as lines."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    passes = [e["epoch"] for e in epochs]
    ax.plot(passes, [100 * e["train_error"] for e in epochs], "o-", label="training error (on the fly)")
    ax.plot(passes, [100 * e["test_error"] for e in epochs], "s-", label="test error")
    if paper_test is not None:
        ax.axhline(paper_test, color="C1", ls="--", lw=1, label=f"paper: test {paper_test}%")
    if paper_train is not None:
        ax.axhline(paper_train, color="C0", ls="--", lw=1, label=f"paper: training {paper_train}%")
    ax.set_xlabel("pass over the training set"), ax.set_ylabel("error (%)")
    ax.set_xticks(passes)
    ax.legend()
    return ax.figure


def show_kernel_table(weight: Tensor, title: str | None = None, size: float = 0.5) -> plt.Figure:
    """Kernels (out, in, k, k) laid out like Table I: one row per *input* map and one
    column per *output* map, on a shared symmetric scale; absent (all-zero) kernels are
    left grey. Compact companion of :func:`plot_connection_table`."""
    w = weight.detach().cpu()
    out_maps, in_maps = w.shape[:2]
    bound = float(w.abs().max()) or 1.0
    fig, axes = plt.subplots(in_maps, out_maps, figsize=(size * out_maps + 0.6, size * in_maps + 0.6),
                             squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.08})
    for i in range(in_maps):
        for o in range(out_maps):
            ax = axes[i, o]
            _draw_kernel(ax, w[o, i], bound, frame_absent=False)
            if i == in_maps - 1:
                ax.set_xlabel(str(o), fontsize=8)
            if o == 0:
                ax.set_ylabel(str(i), fontsize=8, rotation=0, labelpad=8, va="center")
    fig.supxlabel("output map", fontsize=9)
    fig.supylabel("input map", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
