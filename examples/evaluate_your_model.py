"""cskd's metrics and figures on any model's predictions, through the public `analysis` API.

Give it logits (or probabilities) and labels as .npy files, from any framework:

    python examples/evaluate_your_model.py --logits logits.npy --labels labels.npy --out figures/
    python examples/evaluate_your_model.py --probs probs.npy --labels labels.npy --out figures/

Without files it makes its own: two scikit-learn logistic regressions on the 8x8 digits, a strongly
regularised one (C = 0.1: under-confident) and an almost unregularised one (C = 1000), and compares
them. It prints
the metrics (fractions as %; ECE over 20 equal-width bins, the paper's) and writes a reliability
diagram and the paper's Fig. 2 histograms (log-probabilities of the predicted and the true class on
the samples every model misclassifies) as PNG files.
"""

import argparse
from pathlib import Path

import numpy as np

from cskd import analysis
from cskd.analysis.displays import overlay


def own_predictions() -> tuple[dict, np.ndarray]:
    """{model name: test logits} and the test labels of two logistic regressions on the digits."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    models = {"logreg C=0.1": LogisticRegression(C=0.1, max_iter=2000),
              "logreg C=1000": LogisticRegression(C=1000.0, max_iter=5000)}
    return {name: m.fit(x_train, y_train).decision_function(x_test) for name, m in models.items()}, y_test


def main() -> None:
    parser = argparse.ArgumentParser()
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--logits", type=Path, help="(N, C) logits, .npy")
    given.add_argument("--probs", type=Path, help="(N, C) probabilities (rows sum to 1), .npy")
    parser.add_argument("--labels", type=Path, help="(N,) integer labels, .npy")
    parser.add_argument("--out", type=Path, default=Path("evaluation-figures"))
    args = parser.parse_args()

    if args.logits or args.probs:
        if not args.labels:
            parser.error("--labels is needed with --logits or --probs")
        scores = np.load(args.logits or args.probs, allow_pickle=False)
        # probabilities become log-probabilities: the same softmax, so every metric below applies
        logits = {"model": np.log(np.clip(scores, 1e-300, 1.0)) if args.probs else scores}
        labels = np.load(args.labels, allow_pickle=False)
    else:
        logits, labels = own_predictions()

    print(f"{len(labels)} samples, {next(iter(logits.values())).shape[1]} classes")
    print(f"{'model':16} {'top-1 err':>9} {'ECE':>7} {'smooth ECE':>10} {'NLL':>6} {'Brier':>6} {'T':>6} "
          f"{'ECE after TS':>12}")
    for name, z in logits.items():
        p = analysis.softmax(z)
        t = analysis.fit_temperature(z, labels)  # fit on held-out data in practice; here on the test split
        print(f"{name:16} {100 * analysis.top_k_error(z, labels):8.2f}% {100 * analysis.ece(p, labels):6.2f}% "
              f"{100 * analysis.smooth_ece(p, labels):9.2f}% {analysis.nll(z, labels):6.3f} "
              f"{analysis.brier_score(p, labels):6.3f} {t:6.3f} "
              f"{100 * analysis.ece(analysis.softmax(z / t), labels):11.2f}%")

    args.out.mkdir(parents=True, exist_ok=True)
    displays = [analysis.ReliabilityDisplay.from_predictions(labels, z, name=name) for name, z in logits.items()]
    ax, _ = overlay(displays)
    ax.figure.savefig(args.out / "reliability.png", dpi=120, bbox_inches="tight")
    hist = analysis.LogProbDisplay.from_predictions(labels, logits)
    hist.plot()[0].figure.savefig(args.out / "fig2-log-probabilities.png", dpi=120, bbox_inches="tight")
    print(f"figures: {args.out / 'reliability.png'}, {args.out / 'fig2-log-probabilities.png'} "
          f"({hist.n_samples} samples {hist.description})")


if __name__ == "__main__":
    main()
