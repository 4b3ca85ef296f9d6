"""What one training step receives: a `Batch` of anchors and, per the method's partner mode,
their partners. The data path (cskd.data.loaders) makes them; the objectives
(cskd.method.objectives) consume them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# What a training source adds to each anchor batch:
#   "none"     nothing (cross-entropy and friends)
#   "class"    a same-class partner per anchor, augmented independently (CS-KD, the paper's pairing)
#   "in-batch" no extra tensor: the batch itself is B/2 anchors followed by their B/2 partners
#   "view"     a second, independent augmentation of each anchor (DDGSD)
PARTNER_MODES = ("none", "class", "in-batch", "view")


class Batch(NamedTuple):
    x: torch.Tensor  # augmented anchors (B, C, H, W), normalised, on the device
    y: torch.Tensor  # labels (B,)
    partner: torch.Tensor | None = None  # "class": same-class partners; "view": second views
    clean: torch.Tensor | None = None  # anchors without augmentation (CS-KD-E), when asked
    # This rank's anchors x world size / the global batch's anchors: the factor that turns this
    # rank's batch-mean loss into its part of the global batch mean (1 for one process, and for
    # every full batch split evenly; the last, partial global batch may split unevenly).
    share: float = 1.0
