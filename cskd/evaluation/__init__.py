"""After training: `cskd predict` (a run's predictions), `cskd import` (predictions of a model
trained anywhere), the per-run stats cache, and `cskd analyze`."""
