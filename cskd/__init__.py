"""cskd: class-wise self-knowledge distillation (Yun et al., CVPR 2020) as a library.

The pieces of CS-KD for your own training loop, and what cskd's trainer uses itself:

- `CSKDLoss(temperature=4.0, lambda_cls=1.0)`: CE + λ·T²·KL(softmax(partner/T) ‖ softmax(logits/T)).
- `ClassWiseBatchSampler(labels, batch_size, ...)`: a DataLoader `batch_sampler` whose items are
  B anchors followed by a same-class partner for each; `split_pairs` cuts a collated batch.
- `class_wise_kl`: the T²-scaled KL term alone.
- `build_model(name, num_classes=...)`: the paper's networks (`cskd models` lists them);
  `MODELS` their specs.
- `TrainConfig`: the settings of a cskd run (what `cskd train` records in config.json).

Metrics and figures on your own arrays: `cskd.analysis` (the repository's analysis/ folder,
installed under cskd's name). Everything else (training runs, run folders, the dashboard) is
reached through the `cskd` command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Where each public name is defined. They are imported on first use (PEP 562), so that `import
# cskd.errors` (the dashboard, `cskd --help`) does not import torch.
_WHERE = {
    "CSKDLoss": "cskd.method.losses",
    "class_wise_kl": "cskd.method.losses",
    "ClassWiseBatchSampler": "cskd.method.sampler",
    "split_pairs": "cskd.method.sampler",
    "build_model": "cskd.models",
    "MODELS": "cskd.models",
    "TrainConfig": "cskd.config",
}

__all__ = ["CSKDLoss", "ClassWiseBatchSampler", "split_pairs", "class_wise_kl", "build_model", "MODELS",
           "TrainConfig", "__version__"]  # = _WHERE's names and the version (tests/test_library_api.py)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below imports them
    from cskd.config import TrainConfig
    from cskd.method.losses import CSKDLoss, class_wise_kl
    from cskd.method.sampler import ClassWiseBatchSampler, split_pairs
    from cskd.models import MODELS, build_model


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cskd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
