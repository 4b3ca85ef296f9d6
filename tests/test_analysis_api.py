"""The `analysis` package as a public API: its names, typed signatures, docstring examples (run
here, so CI runs them), metric values against an independent numpy computation, bad input, and
examples/evaluate_your_model.py."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cskd import analysis

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.iter_modules(analysis.__path__) if not m.name.startswith("_"))


def test_public_names_resolve_and_state_their_definitions():
    assert set(analysis.__all__) == set(analysis._WHERE)
    for name in analysis.__all__:
        doc = inspect.getdoc(getattr(analysis, name))
        assert doc and len(doc) > 40, name


def _unannotated(fn) -> list[str]:
    sig = inspect.signature(fn)
    return [p.name for p in sig.parameters.values() if p.name not in ("self", "cls")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.annotation is inspect.Parameter.empty]


@pytest.mark.parametrize("name", sorted(analysis.__all__))
def test_every_public_parameter_is_annotated(name):
    obj = getattr(analysis, name)
    if inspect.isclass(obj):
        constructors = [v.__func__ for k, v in vars(obj).items() if isinstance(v, classmethod) and k.startswith("from")]
        assert constructors, f"{name} has no from_... constructor"
        missing = {c.__name__: _unannotated(c) for c in constructors if _unannotated(c)}
    else:
        missing = _unannotated(obj)
    assert not missing, f"{name}: unannotated parameters {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"cskd.analysis.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_every_public_function_has_an_example():
    lacking = []
    for name in analysis.__all__:
        obj = getattr(analysis, name)
        targets = [obj] if not inspect.isclass(obj) else [v.__func__ for k, v in vars(obj).items()
                                                         if isinstance(v, classmethod) and k == "from_predictions"]
        lacking += [name for t in targets if ">>>" not in (inspect.getdoc(t) or "")]
    assert not lacking, f"no runnable example in the docstring of: {sorted(set(lacking))}"


def _numpy_reference(logits: np.ndarray, labels: np.ndarray, n_bins: int = 20) -> dict:
    """The metrics written out independently (float64 numpy, loops over bins)."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    conf, pred = p.max(1), p.argmax(1)
    right = pred == labels
    ece = mce = 0.0
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) if m else (conf >= lo) & (conf <= hi)
        if inside.any():
            gap = abs(right[inside].mean() - conf[inside].mean())
            ece += inside.mean() * gap
            mce = max(mce, gap)
    onehot = np.eye(p.shape[1])[labels]
    return {"ece": ece, "mce": mce, "nll": -np.log(p[np.arange(len(labels)), labels]).mean(),
            "brier": ((p - onehot) ** 2).sum(1).mean(), "top1": 1 - right.mean(),
            "top3": 1 - np.mean([labels[i] in np.argsort(-p[i])[:3] for i in range(len(labels))])}


def test_metrics_equal_an_independent_numpy_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 7)) * 2.5
    labels = rng.integers(0, 7, 500)
    ref = _numpy_reference(logits, labels)
    probs = analysis.softmax(logits)
    assert analysis.ece(probs, labels) == pytest.approx(ref["ece"], abs=1e-12)
    assert analysis.mce(probs, labels) == pytest.approx(ref["mce"], abs=1e-12)
    assert analysis.nll(logits, labels) == pytest.approx(ref["nll"], rel=1e-10)
    assert analysis.brier_score(probs, labels) == pytest.approx(ref["brier"], rel=1e-10)
    assert analysis.top_k_error(logits, labels) == pytest.approx(ref["top1"], abs=1e-12)
    assert analysis.top_k_error(logits, labels, k=3) == pytest.approx(ref["top3"], abs=1e-12)


def test_tensors_are_taken_as_arrays():
    torch = pytest.importorskip("torch")
    z = torch.randn(50, 4, requires_grad=True)
    y = torch.randint(0, 4, (50,))
    assert analysis.nll(z, y) == pytest.approx(analysis.nll(z.detach().numpy(), y.numpy()))


@pytest.mark.parametrize("call, words", [
    (lambda: analysis.nll(np.zeros((3, 2)), np.array([0.5, 1.0, 0.0])), "integer class ids"),
    (lambda: analysis.nll(np.zeros((3, 2)), np.array([0, 1])), "2 entries but logits has 3 rows"),
    (lambda: analysis.nll(np.array([[0.3, 0.7], [0.5, 0.5]]), np.array([0, 1])), "look like probabilities"),
    (lambda: analysis.ece(np.array([[2.0, -1.0]]), np.array([0])), r"\[0, 1\]"),
    (lambda: analysis.ReliabilityDisplay.from_predictions([0], np.array([[0.2, 0.8]]), kind="odds"), "kind"),
])
def test_bad_input_says_what_is_wrong(call, words):
    with pytest.raises(ValueError, match=words):
        call()


@pytest.mark.slow
def test_the_evaluate_your_model_example_runs(tmp_path):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 5)) * 3
    labels = rng.integers(0, 5, 200)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "evaluate_your_model.py"), "--logits",
                          str(tmp_path / "logits.npy"), "--labels", str(tmp_path / "labels.npy"), "--out",
                          str(tmp_path / "figs")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    top1 = float(out.stdout.splitlines()[2].split()[1].rstrip("%"))
    assert top1 == pytest.approx(100 * analysis.top_k_error(logits, labels), abs=0.01)
    assert (tmp_path / "figs" / "reliability.png").stat().st_size > 1000
    assert (tmp_path / "figs" / "fig2-log-probabilities.png").stat().st_size > 1000
