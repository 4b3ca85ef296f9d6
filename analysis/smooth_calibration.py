"""Smooth calibration error and the smooth reliability curve (Błasiok & Nakkiran, "Smooth ECE:
Principled Reliability Diagrams via Kernel Smoothing", ICLR 2024), computed by `relplot`, the
authors' library; nothing here re-derives it.

Top-label calibration, as the binned ECE of analysis.calibration: f = confidence (max softmax
probability, in [0, 1]) and y = correct (argmax equals the label). The smooth ECE is
∫ |r̂(t)| δ̂(t) dt / ∫ δ̂(t) dt, where r̂ is the Nadaraya–Watson kernel regression of the residual
f − y and δ̂ the kernel density of f, both with a reflected Gaussian kernel whose bandwidth σ is
chosen as the fixed point σ = smECE_σ (found by relplot's search to 0.001). It is in [0, 1], 0
for perfectly calibrated predictions, and, unlike the binned ECE, does not depend on a bin count.

The smooth reliability curve is the kernel regression of y on f at σ, evaluated on a mesh of 200
points of [0, 1], with a pointwise 95 % band from bootstrap refits (relplot's bagging). relplot
draws those refits from numpy's global random state: it is seeded here and restored afterwards,
so the band is reproducible and the caller's random stream is left as it was.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from . import _checks

if TYPE_CHECKING:
    import pandas as pd

N_BOOT_BAND = 100  # bootstrap refits of the band (relplot's default is 200; 100 keeps the dashboard quick)


def smooth_ece_from_confidence(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Smooth ECE in [0, 1] of per-sample confidence (N,) in [0, 1] and correctness (N,) bool.

    >>> round(smooth_ece_from_confidence([0.9, 0.9, 0.9, 0.9], [True, True, False, False]), 2)
    0.4
    """
    import relplot

    conf, right = _checks.confidence_and_correct(confidence, correct)
    return float(relplot.smECE(conf, right.astype(np.float64)))


def smooth_ece(probs: ArrayLike, labels: ArrayLike) -> float:
    """Smooth ECE in [0, 1] of probabilities (N, C) (rows sum to 1) and integer labels (N,):
    top-label, with confidence = max probability (see the module docstring).

    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.2, 0.8]])
    >>> 0 <= smooth_ece(probs, [0, 1, 1, 1]) <= 1
    True
    """
    p, y = _checks.probs_and_labels(probs, labels)
    pred = p.argmax(axis=1)  # ties to the lowest class id, as analysis.calibration
    return smooth_ece_from_confidence(p[np.arange(len(y)), pred], pred == y)


@dataclass(frozen=True, eq=False)
class SmoothReliability:
    """A smooth reliability diagram of one set of predictions.

    mesh (M,) points of [0, 1]; accuracy (M,) the smoothed accuracy E[correct | confidence = mesh];
    lower, upper (M,) its pointwise 95 % bootstrap band; density (M,) the kernel density of the
    confidences (integrates to about 1 over [0, 1]); sigma the kernel bandwidth; smooth_ece as
    smooth_ece_from_confidence; n the number of samples.
    """

    mesh: np.ndarray
    accuracy: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    density: np.ndarray
    sigma: float
    smooth_ece: float
    n: int


def smooth_reliability(confidence: ArrayLike, correct: ArrayLike, *, n_boot: int = N_BOOT_BAND,
                       seed: int = 0) -> SmoothReliability:
    """The smooth reliability curve with its band, from per-sample confidence and correctness.

    >>> r = smooth_reliability([0.6, 0.7, 0.8, 0.9] * 5, [True, False, True, True] * 5, n_boot=10)
    >>> r.mesh.shape == r.accuracy.shape == r.lower.shape, 0 <= r.smooth_ece <= 1
    (True, True)
    """
    import relplot

    conf, right = _checks.confidence_and_correct(confidence, correct)
    n_boot = _checks.positive_int(n_boot, "n_boot")
    state = np.random.get_state()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # relplot's own pandas deprecations, not the caller's concern
            np.random.seed(seed)
            out = relplot.prepare_rel_diagram(conf, right.astype(np.float64), plot_confidence_band=True,
                                              num_bootstrap=n_boot, report_CE=True, report_CE_std=False)
    finally:
        np.random.set_state(state)
    return SmoothReliability(np.asarray(out["mesh"]), np.asarray(out["mu"]), np.asarray(out["lower"]),
                             np.asarray(out["upper"]), np.asarray(out["density"]), float(out["sigma"]),
                             float(out["ce"]), len(conf))


def smooth_frame(curves: dict, *, colors: dict | None = None) -> pd.DataFrame:
    """{run name: SmoothReliability} as one long table (run, color, confidence, accuracy, lower,
    upper, density, smooth_ece): what a chart of the curves draws; `colors` {run name: colour}
    as figures.run_colors."""
    import pandas as pd

    from .figures import run_colors

    return pd.concat([pd.DataFrame({"run": name, "color": color, "confidence": c.mesh, "accuracy": c.accuracy,
                                    "lower": c.lower, "upper": c.upper, "density": c.density,
                                    "smooth_ece": c.smooth_ece})
                      for (name, c), color in zip(curves.items(), run_colors(list(curves), colors))],
                     ignore_index=True)


def plot_smooth_reliability(curves: dict, ax=None, *, colors: dict | None = None):
    """Draw {run name: SmoothReliability} on one axes: each curve with its 95 % band, the diagonal,
    and the smooth ECE in the legend; `colors` {run name: colour} as figures.run_colors. Returns
    the axes."""
    from .figures import axes_or_new, run_colors

    ax = axes_or_new(ax, (5.0, 4.6))
    for (name, c), color in zip(curves.items(), run_colors(list(curves), colors)):
        ax.fill_between(c.mesh, c.lower, c.upper, color=color, alpha=0.2, linewidth=0)
        ax.plot(c.mesh, c.accuracy, color=color, linewidth=2, label=f"{name} (smooth ECE {100 * c.smooth_ece:.2f} %)")
    ax.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle=(0, (6, 4)), label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max softmax)", ylabel="accuracy (kernel-smoothed)",
           title="Smooth reliability (band: 95 % bootstrap)")
    ax.legend(loc="upper left", fontsize=8)
    return ax
