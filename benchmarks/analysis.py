"""Time every analysis step on synthetic CIFAR-100-sized arrays.

10,000 samples × 100 classes, 512-d features drawn as Gaussian class clusters, logits a noisy
linear read-out of the class centres (about 30 % top-1 error, over-confident). Prints one line per
step ("<step> <seconds>") and, last, "total_seconds=... tsne_seconds=...". total_seconds is
the wall time of all steps, including a final `analyze_runs` call that recomputes the metrics
and draws and writes every figure and table (reusing the t-SNE coordinates), so it bounds a
full one-run analysis from above. Targets on 2 CPU cores: total <= 30 s; ECE, top-k, Recall@1
<= ~2 s each.

Run: MPLBACKEND=Agg python benchmarks/analysis.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cskd.analysis import calibration as cal  # noqa: E402
from cskd.analysis.embedding import TSNE_MAX_POINTS, tsne_2d  # noqa: E402
from cskd.analysis.metrics import nll, softmax, top_k_error  # noqa: E402
from cskd.analysis.report import analyze_runs  # noqa: E402
from cskd.analysis.retrieval import recall_at_k  # noqa: E402

N, C, D = 10_000, 100, 512


def synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % C
    centers = rng.normal(size=(C, D)).astype(np.float32) * 0.07
    # features: class clusters (centre spread comparable to the noise, so neighbours mostly
    # share a class but not always); logits: a separate, noisier view of the same centres.
    feats = 2.2 * centers[y] + 0.5 * rng.normal(size=(N, D)).astype(np.float32)
    view = centers[y] + 0.5 * rng.normal(size=(N, D)).astype(np.float32)
    logits = 12.0 * view @ centers.T + rng.normal(size=(N, C)).astype(np.float32)
    return feats, logits.astype(np.float32), y.astype(np.int64)


def main() -> None:
    feats, logits, y = synthetic(0)
    val_feats, val_logits, val_y = synthetic(1)
    times: dict[str, float] = {}
    results: dict = {}
    start = time.perf_counter()

    def step(name, fn):
        t0 = time.perf_counter()
        results[name] = fn()
        times[name] = time.perf_counter() - t0
        print(f"{name} {times[name]:.2f}", flush=True)

    step("softmax", lambda: softmax(logits))
    p = results["softmax"]
    step("top1_error", lambda: top_k_error(logits, y, k=1))
    step("top5_error", lambda: top_k_error(logits, y, k=5))
    step("nll", lambda: nll(logits, y))
    step("ece", lambda: cal.ece(p, y))
    step("mce", lambda: cal.mce(p, y))
    step("adaptive_ece", lambda: cal.adaptive_ece(p, y))
    step("classwise_ece", lambda: cal.classwise_ece(p, y))
    step("fit_temperature", lambda: cal.fit_temperature(val_logits, val_y))
    step("recall_at_1", lambda: recall_at_k(feats, y, k=1))
    step("tsne", lambda: tsne_2d(feats, y, max_points=TSNE_MAX_POINTS, seed=0))
    run = dict(logits=logits, features=feats, labels=y, indices=np.arange(N),
               class_names=[f"class{i}" for i in range(C)], dataset="synthetic", split="test",
               config={"dataset": "synthetic", "method": "ce", "seed": 0},
               val_logits=val_logits, val_labels=val_y, tsne=results["tsne"])
    with tempfile.TemporaryDirectory() as out:
        step("report_without_tsne", lambda: analyze_runs({"synthetic": run}, out, progress=False))
    total = time.perf_counter() - start
    print("# top1 {top1_error:.3f} top5 {top5_error:.3f} ece {ece:.3f} R@1 {recall_at_1:.3f} "
          "T {fit_temperature:.2f}".format(**results))
    print(f"total_seconds={total:.1f} tsne_seconds={times['tsne']:.1f}")


if __name__ == "__main__":
    main()
