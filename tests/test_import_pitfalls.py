"""`cskd import` pitfalls: probabilities given as logits are refused (and taken with --probs),
logits that overflow float32 are refused before anything is written, and a second import of a
split replaces it only with --force, after saying what would be lost."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cli

from cskd.analysis.calibration import ece
from cskd.errors import UserError
from cskd.evaluation.importer import import_predictions
from cskd.runfolder import RunFolder, read_predictions

N, C = 400, 5


def _probs(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, C)) * 2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = rng.integers(0, C, N)
    np.save(tmp_path / "probs.npy", p)
    np.save(tmp_path / "labels.npy", y)
    return p, y


def test_probabilities_given_as_logits_are_refused_in_one_line(tmp_path, capsys):
    _probs(tmp_path)
    code = cli("import", tmp_path / "run", "--logits", tmp_path / "probs.npy", "--labels", tmp_path / "labels.npy")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "looks like probabilities" in err and "--probs" in err
    assert not (tmp_path / "run" / "predictions-test.npz").exists()


def test_probs_are_stored_as_log_probabilities_with_the_same_calibration(tmp_path):
    p, y = _probs(tmp_path)
    import_predictions(tmp_path / "run", probs=tmp_path / "probs.npy", labels=tmp_path / "labels.npy")
    stored = np.asarray(read_predictions(RunFolder(tmp_path / "run"), "test").logits, dtype=np.float64)
    back = np.exp(stored) / np.exp(stored).sum(1, keepdims=True)
    assert np.abs(back - p).max() < 1e-6
    assert ece(back, y) == pytest.approx(ece(p, y), abs=1e-6)


@pytest.mark.parametrize("bad, words", [
    (lambda p: p * 2, r"outside \[0, 1\]"),
    (lambda p: p * 0.9, "sum to 1"),
])
def test_probs_that_are_not_probabilities_are_refused(tmp_path, bad, words):
    p, _ = _probs(tmp_path)
    np.save(tmp_path / "probs.npy", bad(p))
    with pytest.raises(UserError, match=words):
        import_predictions(tmp_path / "run", probs=tmp_path / "probs.npy", labels=tmp_path / "labels.npy")


def test_logits_beyond_float32_are_refused_before_anything_is_written(tmp_path):
    z = np.zeros((N, C))
    z[7, 2] = 1e300  # finite as float64, inf as float32
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.zeros(N, dtype=np.int64))
    with pytest.raises(UserError, match="after the conversion to float32.*row 7"):
        import_predictions(tmp_path / "run", logits=tmp_path / "z.npy", labels=tmp_path / "y.npy")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_second_import_of_a_split_needs_force_and_says_what_it_would_lose(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "z.npy", rng.normal(size=(N, C)))
    np.save(tmp_path / "f.npy", rng.normal(size=(N, 4)))
    np.save(tmp_path / "y.npy", rng.integers(0, C, N))
    run = tmp_path / "run"
    args = ("import", run, "--logits", tmp_path / "z.npy", "--labels", tmp_path / "y.npy")
    assert cli(*args, "--features", tmp_path / "f.npy") == 0
    capsys.readouterr()
    assert cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "already holds 400 predictions with their features" in err and "--force" in err
    assert read_predictions(RunFolder(run), "test").features is not None  # untouched
    assert cli(*args, "--force") == 0
    assert read_predictions(RunFolder(run), "test").features is None  # replaced, as asked
