"""Facts from LeCun, Bottou, Bengio & Haffner (1998), as code.

Every number the rest of the package checks against lives here, with the place
in the paper it comes from, so that a reader can audit the specification in one file.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import torch

#: Squashing function x = A tanh(S a) (Appendix A, Eq. 5-6).
SQUASH_A = 1.7159
SQUASH_S = 2.0 / 3.0

#: Input scaling (Section II.B): white background and black ink.
BACKGROUND = -0.1
FOREGROUND = 1.175

#: Table I: the S2 feature maps each C3 map is connected to.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5),
)

#: Per-layer (trainable parameters, connections) as printed in Section II.B.
PAPER_COUNTS: dict[str, tuple[int, int]] = {
    "C1": (156, 122_304),
    "S2": (12, 5_880),
    "C3": (1_516, 151_600),
    "S4": (32, 2_000),
    "C5": (48_120, 48_120),
    "F6": (10_164, 10_164),
    "output": (0, 840),
}
PAPER_TOTAL_PARAMETERS = 60_000
PAPER_TOTAL_CONNECTIONS = 340_908

#: Global learning rate per pass (Section III.B); index 0 is pass 1.
PAPER_LR_SCHEDULE: tuple[float, ...] = (
    (5e-4,) * 2 + (2e-4,) * 3 + (1e-4,) * 3 + (5e-5,) * 4 + (1e-5,) * 8
)
SDLM_MU = 0.02
SDLM_HESSIAN_SAMPLES = 500

#: Test error rates (%) on MNIST, Fig. 9. The paper puts the uncertainty at about 0.1%.
FIG9: tuple[tuple[str, float], ...] = (
    ("linear", 12.0), ("[deslant] linear", 8.4), ("pairwise", 7.6),
    ("K-NN Euclidean", 5.0), ("[deslant] K-NN Euclidean", 2.4),
    ("40 PCA + quadratic", 3.3), ("1000 RBF + linear", 3.6),
    ("[16x16] Tangent Distance", 1.1), ("SVM poly 4", 1.1), ("RS-SVM poly 5", 1.0),
    ("[dist] V-SVM poly 9", 0.8), ("28x28-300-10", 4.7), ("[dist] 28x28-300-10", 3.6),
    ("[deslant] 20x20-300-10", 1.6), ("28x28-1000-10", 4.5), ("[dist] 28x28-1000-10", 3.8),
    ("28x28-300-100-10", 3.05), ("[dist] 28x28-300-100-10", 2.5),
    ("28x28-500-150-10", 2.95), ("[dist] 28x28-500-150-10", 2.45),
    ("[16x16] LeNet-1", 1.7), ("LeNet-4", 1.1), ("LeNet-4 / Local", 1.1),
    ("LeNet-4 / K-NN", 1.1), ("LeNet-5", 0.95), ("[dist] LeNet-5", 0.8),
    ("[dist] Boosted LeNet-4", 0.7),
)
PAPER_TEST_ERROR = 0.95          # %, no distortions (Fig. 5)
PAPER_TRAIN_ERROR = 0.35         # %, after 19 passes (Fig. 5)
PAPER_DISTORTED_TEST_ERROR = 0.8  # %, with 540,000 distorted patterns


def c3_mask() -> torch.Tensor:
    """Table I as a (16, 6) boolean matrix: ``mask[c3_map, s2_map]``."""
    mask = torch.zeros(16, 6, dtype=torch.bool)
    for out_map, in_maps in enumerate(C3_TABLE):
        mask[out_map, list(in_maps)] = True
    return mask


@lru_cache(maxsize=1)
def _bitmap_text() -> str:
    return resources.files("lenet_utils").joinpath("rbf_digit_bitmaps.txt").read_text()


def rbf_bitmaps() -> torch.Tensor:
    """The output layer's fixed targets (Fig. 3): a (10, 12, 7) tensor of +1 (ink) / -1."""
    maps = {}
    for line in _bitmap_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digit, rows = line.split(":")
        rows = rows.split()
        if len(rows) != 12 or any(len(r) != 7 for r in rows):
            raise ValueError(f"bitmap of digit {digit} is not 12 rows of 7 characters")
        maps[int(digit)] = [[1.0 if ch == "#" else -1.0 for ch in r] for r in rows]
    if sorted(maps) != list(range(10)):
        raise ValueError(f"bitmap file holds digits {sorted(maps)}, expected 0..9")
    return torch.tensor([maps[d] for d in range(10)])
