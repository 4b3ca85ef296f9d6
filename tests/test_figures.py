import os

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from cskd.analysis import figures


def test_save_figure_writes_png_and_pdf_plainly(tmp_path):
    fig = Figure()
    fig.subplots().plot([0, 1], [0, 1])
    png, pdf = figures.save_figure(fig, tmp_path / "sub" / "line")  # the folder is created
    assert png == str(tmp_path / "sub" / "line.png") and pdf == str(tmp_path / "sub" / "line.pdf")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(pdf, "rb") as f:
        assert f.read(4) == b"%PDF"
    assert os.path.getsize(png) > 1000
    assert sorted(os.listdir(tmp_path / "sub")) == ["line.pdf", "line.png"]  # nothing else written


def test_run_colors_are_matplotlibs_default_cycle():
    assert figures.run_color(0) == "#1f77b4" and figures.run_color(1) == "#ff7f0e"
    assert figures.run_color(10) == figures.run_color(0)  # cycles like C0..C9


def test_class_colors_stay_distinct_for_many_classes():
    for n in (3, 10, 20, 100, 250):
        colors = figures.class_colors(n)
        assert len(colors) == n
        rgb = np.array([to_rgb(c) for c in colors])
        assert len({tuple(np.round(c, 3)) for c in rgb}) == n  # all different
    rgb = np.array([to_rgb(c) for c in figures.class_colors(100)])
    d = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    assert d.min() > 0.02  # no two of 100 colours (nearly) coincide
    assert np.all(np.sqrt(((rgb[1:] - rgb[:-1]) ** 2).sum(-1)) > 0.2)  # neighbouring ids differ clearly


def test_axes_or_new():
    ax = Figure().subplots()
    assert figures.axes_or_new(ax, (3, 3)) is ax
    new = figures.axes_or_new(None, (3, 2))
    assert new is not ax and tuple(new.figure.get_size_inches()) == (3, 2)
