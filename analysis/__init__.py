"""Post-hoc analysis of trained CS-KD / baseline runs.

Array-in, number-out metric functions (`metrics`, `calibration`, `retrieval`, `misclassified`,
`hierarchy`), a t-SNE wrapper (`embedding`), result tables (`tables`), plotting helpers that only
draw (`figures`) and the one entry point that writes a full report folder (`report.analyze_runs`).
Nothing here touches a model or a GPU: everything works on saved logits, features and labels.
"""
