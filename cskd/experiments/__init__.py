"""Experiments made of many runs: `cskd sweep`, `cskd reproduce` (the paper's tables, with its
numbers transcribed in cskd.experiments.paper) and the README's `cskd demo`."""
