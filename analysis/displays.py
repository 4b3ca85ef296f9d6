"""Figure data computed once, drawn anywhere (in the spirit of scikit-learn's CalibrationDisplay).

Each display is a frozen dataclass holding the computed values of one paper figure (numpy arrays,
tuples, dicts; picklable, so a cache can hold it). It is built by a `from_...` classmethod that
computes them from arrays, draws itself with matplotlib through `plot(ax=None, ...)` (a new Figure
when no axes are given; plot only draws, it computes nothing) and returns through `frame()` a tidy
pandas DataFrame of exactly what `plot` draws, so another renderer (the dashboard's Vega-Lite
charts) shows the same numbers in the same colours (`order` / `color` columns, run j in
analysis.figures.run_color(j)) without recomputing them.

- ReliabilityDisplay (Fig. 5), with `overlay` (several runs on one axes) and `side_by_side`
- LogProbDisplay (Fig. 2), PredictiveDistributionDisplay (Fig. 1b)
- HierarchyDisplay (Fig. 4 a/b), DomainErrorDisplay (Fig. 4(c))
- TSNEDisplay (Fig. 3), TxLDisplay (supplementary Table 7)
"""

from .embedding_display import TSNEDisplay
from .hierarchy_display import DomainErrorDisplay, HierarchyDisplay
from .misclassified_display import LogProbDisplay, PredictiveDistributionDisplay
from .reliability_display import ReliabilityDisplay, overlay, side_by_side
from .txl_display import TxLDisplay

__all__ = ["DomainErrorDisplay", "HierarchyDisplay", "LogProbDisplay", "PredictiveDistributionDisplay",
           "ReliabilityDisplay", "TSNEDisplay", "TxLDisplay", "overlay", "side_by_side"]
