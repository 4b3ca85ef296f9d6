"""Metrics and figures of classifiers on plain arrays: what cskd analyses runs with, for any model.

Inputs are numpy arrays or torch tensors: logits (N, C), probabilities (N, C), integer labels
(N,), features (N, D). Fractions are in [0, 1]; the binned calibration errors use equal-width
bins (m/M, (m+1)/M] with 0 in the first, M = 20 by default (the paper's), see
`analysis.calibration`; the smooth ECE needs no bins (`analysis.smooth_calibration`). Nothing
here touches a model or a GPU, and nothing imports cskd or app.

Modules: `metrics` (softmax, top-k error, NLL), `calibration` (reliability bins, ECE, MCE,
adaptive and class-wise ECE, bootstrap interval, Brier, temperature scaling),
`smooth_calibration`, `retrieval` (Recall@k), `confusion`, `misclassified`, `hierarchy`,
`embedding` (t-SNE), `displays` (one display per paper figure: data computed once, drawn with
matplotlib or handed over as a DataFrame), `tables`, and `report.analyze_runs` (a report folder).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Where each public name is defined; imported on first use (PEP 562), so that importing one
# module of the package does not import matplotlib, pandas and openTSNE with it.
_WHERE = {
    "softmax": "metrics", "log_softmax": "metrics", "top_k_error": "metrics", "nll": "metrics",
    "ece": "calibration", "mce": "calibration", "adaptive_ece": "calibration", "classwise_ece": "calibration",
    "ece_bootstrap_ci": "calibration", "brier_score": "calibration", "overconfidence": "calibration",
    "reliability_bins": "calibration", "fit_temperature": "calibration", "apply_temperature": "calibration",
    "smooth_ece": "smooth_calibration", "smooth_reliability": "smooth_calibration",
    "recall_at_k": "retrieval",
    "confusion_matrix": "confusion", "per_class_accuracy": "confusion", "most_confused_pairs": "confusion",
    "misclassified_by_all": "misclassified", "hierarchical_accuracy": "hierarchy",
    "ReliabilityDisplay": "displays", "LogProbDisplay": "displays", "PredictiveDistributionDisplay": "displays",
    "HierarchyDisplay": "displays", "DomainErrorDisplay": "displays", "TSNEDisplay": "displays",
    "TxLDisplay": "displays",
}

__all__ = [
    "softmax", "log_softmax", "top_k_error", "nll",
    "ece", "mce", "adaptive_ece", "classwise_ece", "ece_bootstrap_ci", "brier_score", "overconfidence",
    "reliability_bins", "fit_temperature", "apply_temperature",
    "smooth_ece", "smooth_reliability",
    "recall_at_k",
    "confusion_matrix", "per_class_accuracy", "most_confused_pairs",
    "misclassified_by_all", "hierarchical_accuracy",
    "ReliabilityDisplay", "LogProbDisplay", "PredictiveDistributionDisplay", "HierarchyDisplay",
    "DomainErrorDisplay", "TSNEDisplay", "TxLDisplay",
]  # = _WHERE's names (tests/test_analysis_api.py)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below imports them
    from .calibration import (
        adaptive_ece,
        apply_temperature,
        brier_score,
        classwise_ece,
        ece,
        ece_bootstrap_ci,
        fit_temperature,
        mce,
        overconfidence,
        reliability_bins,
    )
    from .confusion import confusion_matrix, most_confused_pairs, per_class_accuracy
    from .displays import (
        DomainErrorDisplay,
        HierarchyDisplay,
        LogProbDisplay,
        PredictiveDistributionDisplay,
        ReliabilityDisplay,
        TSNEDisplay,
        TxLDisplay,
    )
    from .hierarchy import hierarchical_accuracy
    from .metrics import log_softmax, nll, softmax, top_k_error
    from .misclassified import misclassified_by_all
    from .retrieval import recall_at_k
    from .smooth_calibration import smooth_ece, smooth_reliability


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
