"""Synthetic run folders written through cskd.runfolder.RunFolder, as `cskd train` + `cskd predict`
(+ `cskd analyze`'s caches) would leave them, without training: config.json, metrics.jsonl,
summary.json, best.pt (an empty model), predictions-{test,val}.npz with exactly the arrays
`cskd predict` writes, the t-SNE cache and, on request, the stats cache.

Used by the dashboard's tests (tiny runs) and by benchmarks/dashboard.py (CIFAR- and
ImageNet-validation-scale runs; arrays are generated in row chunks, so a 50,000 x 1,000 run needs
about its own size in memory once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cskd.analysis.embedding import TSNE_MAX_POINTS  # points of a t-SNE cache (it records them)
from cskd.config import TrainConfig
from cskd.runfolder import (
    RunFolder,
    read_predictions,
    save_checkpoint,
    tsne_name,
    write_config,
    write_derived,
    write_metrics,
    write_predictions,
    write_summary,
)

CHUNK = 4096


def _labels(n: int, n_classes: int, split: str) -> np.ndarray:
    data = np.random.default_rng(1000 + (split == "val"))  # the data set: the same for every run
    labels = np.arange(n) % n_classes
    data.shuffle(labels)
    return labels.astype(np.int64)


def _class_images(n_classes: int, image_shape) -> np.ndarray:
    """One smooth colour patch per class (a coarse random grid, enlarged), shared by every run."""
    h, w, c = image_shape
    grid = np.random.default_rng(7).integers(0, 256, (n_classes, max(1, h // 8) + 1, max(1, w // 8) + 1, c))
    return np.repeat(np.repeat(grid, 8, axis=1), 8, axis=2)[:, :h, :w, :].astype(np.int16)


def synthetic_predictions(n: int, n_classes: int, *, accuracy: float, sharpness: float, seed: int, split: str,
                          dim: int | None, image_shape=None, coarse: bool = False) -> dict:
    """The arrays of a predictions file. Wrong predictions get smaller margins than right ones
    and often the true class as runner-up, as in a real model; softmax(logits) is roughly
    calibrated at sharpness 2.4 and over-confident above it. Features sit near the predicted
    class's centre, so Recall@1 follows the accuracy."""
    labels = _labels(n, n_classes, split)
    rng = np.random.default_rng(seed)  # the model: differs between runs
    logits = np.empty((n, n_classes), np.float32)
    features = np.empty((n, dim), np.float16) if dim else None
    images = np.empty((n, *image_shape), np.uint8) if image_shape else None
    centres = np.random.default_rng(11).normal(0, 1, (n_classes, dim)).astype(np.float32) if dim else None
    base = _class_images(n_classes, image_shape) if image_shape else None
    for s in range(0, n, CHUNK):
        e = min(s + CHUNK, n)
        y, rows = labels[s:e], np.arange(e - s)
        correct = rng.random(e - s) < accuracy
        target = np.where(correct, y, (y + rng.integers(1, n_classes, e - s)) % n_classes) if n_classes > 1 else y
        z = rng.standard_normal((e - s, n_classes), dtype=np.float32)
        z[rows, target] += np.where(correct, 3.0 + rng.exponential(2.0, e - s), 1.5 + rng.exponential(0.8, e - s))
        z[rows, y] += np.where(correct, 0.0, 2.0 + rng.exponential(0.5, e - s))
        logits[s:e] = sharpness * z
        if dim:
            features[s:e] = centres[target] + rng.normal(0, 0.8, (e - s, dim)).astype(np.float32)
        if image_shape:  # the data set's images: the same in every run
            noise = np.random.default_rng(2000 + s).integers(-30, 31, (e - s, *image_shape), dtype=np.int16)
            images[s:e] = np.clip(base[y] + noise, 0, 255)
    arrays = {"logits": logits, "labels": labels,
              "indices": np.arange(n, dtype=np.int64) * 3 + 1}  # data-set positions, not 0..n-1, on purpose
    if features is not None:
        arrays["features"] = features
    if images is not None:
        arrays["images"] = images
    if coarse:
        groups = max(2, n_classes // 5)
        arrays["fine_to_coarse"] = (np.arange(n_classes) % groups).astype(np.int64)
    return arrays


def write_synthetic_run(folder, *, method: str = "cskd", seed: int = 0, n: int = 200, n_val: int = 100,
                        n_classes: int = 10, accuracy: float = 0.7, sharpness: float = 1.0, image_shape=(8, 8, 1),
                        coarse: bool = False, dim: int | None = 32, epochs: int = 5, dataset: str = "synthetic",
                        model: str = "preact_resnet18", temperature: float = 4.0, lambda_cls: float = 1.0,
                        select_on: str = "val", class_names=None, predictions: bool = True, tsne: bool = True,
                        stats: bool = False, protocol: str = "clean") -> Path:
    """A finished-looking run folder; `sharpness` > 1 makes the model over-confident. With
    select_on="test" the run looks like one trained with --select-on test (metrics log test_acc,
    the summary says selected_on "test")."""
    folder = RunFolder(folder)
    cfg = TrainConfig(dataset=dataset, model=model, method=method, seed=seed, epochs=epochs, select_on=select_on,
                      protocol=protocol, temperature=temperature, lambda_cls=lambda_cls, out=str(folder.path))
    names = list(class_names) if class_names is not None else [f"class{c:02d}" for c in range(n_classes)]
    coarse_names = [f"group{g}" for g in range(max(2, n_classes // 5))] if coarse else None
    with folder.writing(command="tests/synthetic_runs.py"):
        write_config(folder, cfg.to_dict(), {"synthetic": True, "class_names": names})
        write_metrics(folder, [{"epoch": e + 1, "lr": 0.1, "train_loss": 2.0 / (e + 1) + 0.2,
                                "train_ce": 2.0 / (e + 1), "train_reg": 0.2 if method != "ce" else 0.0,
                                "train_acc": accuracy * e / epochs, f"{select_on}_acc": accuracy * (e + 1) / epochs,
                                f"{select_on}_loss": 1.0 / (e + 1), "seconds": 1.0} for e in range(epochs)])
        save_checkpoint(folder, "best", {"model": {}, "config": cfg.to_dict(), "epoch": epochs - 1,
                                         "best": {"acc": accuracy, "epoch": epochs}})
        write_summary(folder, {"finished": True, "best_epoch": epochs, "best_acc": accuracy, "selected_on": select_on,
                               "train_seconds": 5.0, "test_acc": accuracy, "test_loss": 1.0, "test_n": n})
        if not predictions:
            return folder.path
        meta = {"checkpoint": "best", "checkpoint_sha256": folder.recorded_sha256("best.pt"), "epoch": epochs,
                 "dataset": dataset, "class_names": names, "coarse_names": coarse_names, "config": cfg.to_dict()}
        for split, size in (("test", n), ("val", n_val)):
            if not size:
                continue
            arrays = synthetic_predictions(size, n_classes, accuracy=accuracy, sharpness=sharpness, split=split,
                                           seed=seed * 7 + len(method) + (split == "val"), coarse=coarse,
                                           dim=dim, image_shape=image_shape if split == "test" else None)
            write_predictions(folder, split, arrays, meta)
        if tsne and dim:
            write_tsne(folder)
    if stats:
        from cskd.evaluation.stats_compute import ensure_stats

        ensure_stats(folder)
    return folder.path


def write_tsne(folder: RunFolder, split: str = "test") -> None:
    """A t-SNE cache as cskd.evaluation.run_data.cached_tsne writes it, with made-up coordinates: one blob per
    class on a grid (at most TSNE_MAX_POINTS points, stratified as tsne_2d subsamples)."""
    from cskd.analysis.embedding import stratified_subsample

    preds = read_predictions(folder, split)
    labels = np.asarray(preds.labels)
    rows = stratified_subsample(labels, TSNE_MAX_POINTS, seed=0)
    side = int(np.ceil(np.sqrt(preds.num_classes)))
    rng = np.random.default_rng(0)
    coords = np.stack([labels[rows] % side, labels[rows] // side], 1) * 8.0 + rng.normal(0, 1.5, (rows.size, 2))
    with folder.writing(command="tests/synthetic_runs.py"):
        write_derived(folder, tsne_name(split), {"coords": coords.astype(np.float32), "rows": rows}, kind="tsne",
                      predictions=preds, max_points=TSNE_MAX_POINTS)
