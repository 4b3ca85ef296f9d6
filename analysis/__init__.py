"""Post-hoc analysis of trained CS-KD / baseline runs.

Array-in, number-out metric functions (`metrics`, `calibration`, `confusion`, `retrieval`,
`misclassified`, `hierarchy`), a t-SNE wrapper (`embedding`), result tables and the comparison
with the paper (`tables`), one display per paper figure that computes its data once and draws it
with matplotlib or hands it over as a DataFrame (`displays`, built on the colours and figure
writing of `figures`), and the one entry point that writes a full report folder
(`report.analyze_runs`). Nothing here touches a model or a GPU, and nothing imports cskd or app:
everything works on saved logits, features and labels.
"""
