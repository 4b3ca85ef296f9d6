"""Vega-Lite specs (plain dicts: no Altair, whose validation costs ~0.1 s a chart) that draw the
`frame()` of an analysis.displays object, so the screen shows exactly the numbers the PNG/PDF
figures draw. Data goes to the browser as Arrow (the DataFrame passed next to the spec).

Runs are coloured with `run_scale` (each run's colour fixed by its place among the picked runs,
as the `color` column says) on every page. Text in specs is drawn as text by Vega (never read as
Markdown or HTML); the one HTML-rendering path, the tooltip's `image` field, only ever holds data
URLs of thumbnails (made by app/images.py).
"""

from __future__ import annotations

import pandas as pd

from cskd.analysis.figures import GT_COLOR

UNIT = {"domain": [0, 1]}
SIDE = 300  # pixels of one reliability panel
GAP_OVERLAY = "dotted: gap from the bin's accuracy to its mean confidence (upwards: over-confident)"
GAP_BARS = "red: gap between the bin's accuracy and its mean confidence (above the bar: over-confident)"
FIT_WIDTH = {"type": "fit-x", "contains": "padding"}  # the width of the page, the height as given


def run_scale(frame: pd.DataFrame, field: str = "run") -> dict:
    """Colour scale mapping each value of `field` to its run's colour (frame's `color` column)."""
    pairs = frame.drop_duplicates(field)[[field, "color"]]
    return {"domain": list(pairs[field]), "range": list(pairs["color"])}


def _constant(text: str, field: str = "what") -> dict:
    """A transform adding `field` = `text` to every row (a JSON string literal: quotes in the text
    cannot break the expression)."""
    return {"calculate": _js(text), "as": field}


def _legend(orient: str = "top", **more) -> dict:
    return {"orient": orient, "title": None, "labelLimit": 600, **more}


def reliability_overlay(frame: pd.DataFrame, *, log_counts: bool) -> dict:
    """Paper Fig. 5 with every run on one axes: each bin's accuracy as a segment across the bin and a
    dot at the bin's mean confidence, a dotted segment from the dot to the diagonal (the gap),
    the diagonal, and per-bin counts underneath (step lines; log scale with `log_counts`)."""
    color = {"field": "label", "type": "nominal", "scale": run_scale(frame, "label"), "legend": _legend(columns=1)}
    x = {"field": "lower", "type": "quantitative", "scale": UNIT, "title": "confidence (max softmax)"}
    tips = [{"field": "run"}, {"field": "lower", "format": ".2f", "title": "bin from"},
            {"field": "upper", "format": ".2f", "title": "to"}, {"field": "accuracy", "format": ".3f"},
            {"field": "confidence", "format": ".3f", "title": "mean confidence"}, {"field": "count"}]
    dash = {"field": "what", "type": "nominal", "title": None, "legend": _legend(columns=1),
            "scale": {"domain": ["accuracy of the bin (solid)", GAP_OVERLAY, "perfect calibration"],
                      "range": [[1, 0], [2, 2], [6, 4]]}}
    full = {"filter": "datum.count > 0"}
    top = {"width": SIDE * 2, "height": SIDE, "layer": [
        {"transform": [full, _constant("accuracy of the bin (solid)")],
         "mark": {"type": "rule", "strokeWidth": 2.5},
         "encoding": {"x": x, "x2": {"field": "upper"}, "y": {"field": "accuracy", "type": "quantitative",
                                                               "scale": UNIT, "title": "accuracy"},
                      "color": color, "strokeDash": dash, "tooltip": tips}},
        {"transform": [full], "mark": {"type": "point", "filled": True, "size": 30},
         "encoding": {"x": {"field": "confidence", "type": "quantitative", "scale": UNIT},
                      "y": {"field": "accuracy", "type": "quantitative"}, "color": color, "tooltip": tips}},
        {"transform": [full, _constant(GAP_OVERLAY)], "mark": {"type": "rule", "strokeWidth": 1.5},
         "encoding": {"x": {"field": "confidence", "type": "quantitative", "scale": UNIT},
                      "y": {"field": "accuracy", "type": "quantitative"}, "y2": {"field": "confidence"},
                      "color": color, "strokeDash": dash, "tooltip": tips}},
        {"data": {"values": [{"a": 0, "b": 1, "what": "perfect calibration"}]},
         "mark": {"type": "rule", "color": "black", "strokeWidth": 1},
         "encoding": {"x": {"field": "a", "type": "quantitative"}, "x2": {"field": "b"},
                      "y": {"field": "a", "type": "quantitative"}, "y2": {"field": "b"}, "strokeDash": dash}},
    ]}
    counts = {"width": SIDE * 2, "height": 90, "transform": [full], "mark": {"type": "rule", "strokeWidth": 2},
              "encoding": {"x": x, "x2": {"field": "upper"},
                           "y": _count_axis(log_counts), "color": color, "tooltip": tips}}
    return {"vconcat": [top, counts], "spacing": 6, "resolve": {"scale": {"color": "shared"}}}


def smooth_reliability(frame: pd.DataFrame) -> dict:
    """Smooth reliability curves (analysis.smooth_calibration): each run's kernel-smoothed accuracy
    over confidence with its 95 % bootstrap band, the diagonal, and each run's confidence density
    underneath."""
    color = {"field": "run", "type": "nominal", "scale": run_scale(frame), "legend": _legend(columns=1)}
    x = {"field": "confidence", "type": "quantitative", "scale": UNIT, "title": "confidence (max softmax)"}
    tips = [{"field": "run"}, {"field": "confidence", "format": ".3f"},
            {"field": "accuracy", "format": ".3f", "title": "smoothed accuracy"},
            {"field": "lower", "format": ".3f", "title": "band from"},
            {"field": "upper", "format": ".3f", "title": "to"}]
    top = {"width": SIDE * 2, "height": SIDE, "layer": [
        {"mark": {"type": "area", "opacity": 0.2},
         "encoding": {"x": x, "y": {"field": "lower", "type": "quantitative", "scale": UNIT, "title": "accuracy"},
                      "y2": {"field": "upper"}, "color": color}},
        {"mark": {"type": "line", "strokeWidth": 2.5},
         "encoding": {"x": x, "y": {"field": "accuracy", "type": "quantitative", "scale": UNIT}, "color": color,
                      "tooltip": tips}},
        {"data": {"values": [{"a": 0, "b": 1}]},
         "mark": {"type": "rule", "color": "black", "strokeWidth": 1, "strokeDash": [6, 4]},
         "encoding": {"x": {"field": "a", "type": "quantitative"}, "x2": {"field": "b"},
                      "y": {"field": "a", "type": "quantitative"}, "y2": {"field": "b"}}},
    ]}
    density = {"width": SIDE * 2, "height": 90, "mark": {"type": "line", "strokeWidth": 1.5},
               "encoding": {"x": x, "y": {"field": "density", "type": "quantitative", "title": "density"},
                            "color": color, "tooltip": tips}}
    return {"vconcat": [top, density], "spacing": 6, "resolve": {"scale": {"color": "shared"}}}


def _count_axis(log_counts: bool) -> dict:
    scale = {"type": "log"} if log_counts else {"zero": True}
    return {"field": "count", "type": "quantitative", "scale": scale,
            "title": "samples (log)" if log_counts else "samples"}


def reliability_side_by_side(frame: pd.DataFrame, *, log_counts: bool) -> dict:
    """One reliability diagram per run, side by side on shared axes: accuracy bars spanning each
    non-empty bin in the run's colour, the gap to the bin's mean confidence shaded red (legend),
    the diagonal, and the per-bin counts underneath on one scale."""
    color = {"field": "run", "type": "nominal", "scale": run_scale(frame), "legend": None}
    x = {"field": "lower", "type": "quantitative", "scale": UNIT, "title": "confidence (max softmax)"}
    tips = [{"field": "run"}, {"field": "lower", "format": ".2f", "title": "bin from"},
            {"field": "upper", "format": ".2f", "title": "to"}, {"field": "accuracy", "format": ".3f"},
            {"field": "confidence", "format": ".3f", "title": "mean confidence"}, {"field": "count"}]
    column = {"field": "label", "type": "nominal", "title": None, "sort": {"field": "order"},
              "header": {"labelFontSize": 12, "labelLimit": SIDE + 60}}
    full = {"filter": "datum.count > 0"}
    gap_fill = {"field": "what", "type": "nominal", "title": None, "legend": _legend(),
                "scale": {"domain": [GAP_BARS], "range": [GT_COLOR]}}
    top = {"facet": {"column": column}, "spec": {"width": SIDE, "height": SIDE, "layer": [
        {"transform": [full], "mark": {"type": "rect", "stroke": "black", "strokeWidth": 0.5},
         "encoding": {"x": x, "x2": {"field": "upper"},
                      "y": {"field": "accuracy", "type": "quantitative", "scale": UNIT, "title": "accuracy"},
                      "y2": {"datum": 0}, "color": color, "tooltip": tips}},
        {"transform": [full, _constant(GAP_BARS)], "mark": {"type": "rect", "opacity": 0.35},
         "encoding": {"x": x, "x2": {"field": "upper"}, "y": {"field": "accuracy", "type": "quantitative"},
                      "y2": {"field": "confidence"}, "fill": gap_fill, "tooltip": tips}},
        {"transform": [{"filter": "datum.bin == 0"}], "mark": {"type": "rule", "color": "black", "strokeDash": [6, 4]},
         "encoding": {"x": {"datum": 0, "type": "quantitative"}, "x2": {"datum": 1},
                      "y": {"datum": 0, "type": "quantitative"}, "y2": {"datum": 1}}},
    ]}}
    counts = {"facet": {"column": {**column, "header": {"labels": False}}}, "spec": {
        "width": SIDE, "height": 90, "transform": [full],
        "mark": {"type": "rect", "stroke": "black", "strokeWidth": 0.5},
        "encoding": {"x": x, "x2": {"field": "upper"}, "y": _count_axis(log_counts),
                     "y2": {"datum": 0.5 if log_counts else 0}, "color": color, "tooltip": tips}}}
    return {"vconcat": [top, counts], "spacing": 4}


def logprob(frame: pd.DataFrame) -> dict:
    """Paper Fig. 2: overlaid histograms of the log-probability of the predicted and of the true
    class, one translucent colour per run (LogProbDisplay.frame)."""
    return {"facet": {"column": {"field": "of", "type": "nominal", "title": None,
                                 "sort": ["predicted class", "ground-truth class"],
                                 "header": {"labelExpr": "'log-probability of the ' + datum.value",
                                            "labelFontSize": 12}}},
            "spec": {"width": 380, "height": 220, "mark": {"type": "rect", "opacity": 0.45},
                     "encoding": {"x": {"field": "lower", "type": "quantitative", "title": "log-probability"},
                                  "x2": {"field": "upper"},
                                  "y": {"field": "count", "type": "quantitative", "title": "samples"},
                                  "y2": {"datum": 0},
                                  "color": {"field": "run", "type": "nominal", "scale": run_scale(frame),
                                            "legend": _legend()},
                                  "tooltip": [{"field": "run"}, {"field": "lower", "format": ".2f"},
                                              {"field": "upper", "format": ".2f"}, {"field": "count"}]}},
            "resolve": {"scale": {"x": "independent", "y": "independent"}}}


def distributions(frame: pd.DataFrame, *, shared_axis: bool, true_name: str) -> dict:
    """Paper Fig. 1b: the softmax probabilities of one sample (PredictiveDistributionDisplay.frame).
    Shared axis: one bar per run for each class, grouped; otherwise one panel per run with its own
    top classes. The ground-truth class's bars are outlined and its label red."""
    color = {"field": "run", "type": "nominal", "scale": run_scale(frame), "legend": _legend()}
    label_color = {"condition": {"test": f"datum.value === {_js(true_name)}", "value": GT_COLOR}, "value": "#333"}
    y = {"field": "class_name", "type": "nominal", "title": None, "sort": {"field": "position", "op": "min"},
         "axis": {"labelColor": label_color, "labelFontSize": 12, "labelLimit": 220}}
    bars = {"mark": {"type": "bar"}, "encoding": {
        "x": {"field": "probability", "type": "quantitative", "scale": {"domain": [0, 1]},
              "title": "softmax probability"},
        "y": y, "color": color,
        "stroke": {"condition": {"test": "datum.is_true", "value": "black"}, "value": None},
        "strokeWidth": {"value": 1.5},
        "tooltip": [{"field": "run"}, {"field": "class_name", "title": "class"},
                    {"field": "probability", "format": ".4f"}, {"field": "is_true", "title": "ground truth"}]}}
    if shared_axis:
        bars["encoding"]["yOffset"] = {"field": "run", "type": "nominal", "sort": {"field": "order"}}
        runs, classes = frame["run"].nunique(), frame["class"].nunique()
        return {**bars, "autosize": FIT_WIDTH, "height": classes * (9 * runs + 12) + 30}
    return {"facet": {"row": {"field": "run", "type": "nominal", "title": None, "sort": {"field": "order"},
                              "header": {"labelAngle": 0, "labelAlign": "left", "labelLimit": 300}}},
            "spec": {**bars, "width": 320, "height": {"step": 18}},
            "resolve": {"scale": {"y": "independent"}}, "spacing": 6}


def _js(text: str) -> str:
    import json

    return json.dumps(str(text))


def heatmap(frame: pd.DataFrame, *, x: str, y: str, value: str, text: str | None, x_title: str, y_title: str,
            value_title: str, scheme: str = "blues", domain=None, select: str | None = None,
            tooltip=()) -> dict:
    """Cells of `value` at (`x`, `y`) in the frame's row order (sort by the `x_order`/`y_order`
    columns), annotated with `text` when given; `select` names a point selection on the cells."""
    scale = {"scheme": scheme}
    if domain is not None:
        scale["domain"] = domain
    enc = {"x": {"field": x, "type": "nominal", "title": x_title, "sort": {"field": "x_order", "op": "min"},
                 "axis": {"labelLimit": 160}},
           "y": {"field": y, "type": "nominal", "title": y_title, "sort": {"field": "y_order", "op": "min"},
                 "axis": {"labelLimit": 160}}}
    cells = {"mark": {"type": "rect"}, "encoding": {
        **enc, "color": {"field": value, "type": "quantitative", "scale": scale, "title": value_title,
                         "legend": {"orient": "right"}},
        "tooltip": [{"field": y, "title": y_title}, {"field": x, "title": x_title},
                    {"field": value, "title": value_title, "format": ".2f"}, *tooltip]}}
    if select:
        cells["params"] = [{"name": select, "select": {"type": "point", "fields": [y, x]}}]
        cells["encoding"]["opacity"] = {"condition": {"param": select, "value": 1, "empty": True}, "value": 0.35}
    layers = [cells]
    if text:
        layers.append({"mark": {"type": "text", "fontSize": 9}, "encoding": {
            **enc, "text": {"field": text},
            "color": {"condition": {"test": f"datum['{value}'] > 0.5 * ({domain[1] if domain else 1})",
                                    "value": "white"}, "value": "black"}}})
    return {"layer": layers, "autosize": FIT_WIDTH}


def grouped_bars(frame: pd.DataFrame, *, x: str, y: str, y_title: str, x_title: str) -> dict:
    """One bar per run in each `x` group (DomainErrorDisplay.frame), runs in their colours."""
    return {"mark": {"type": "bar"}, "autosize": FIT_WIDTH, "height": 260, "encoding": {
        "x": {"field": x, "type": "nominal", "title": x_title, "sort": {"field": "group", "op": "min"},
              "axis": {"labelAngle": -40, "labelLimit": 140}},
        "xOffset": {"field": "run", "type": "nominal", "sort": {"field": "order"}},
        "y": {"field": y, "type": "quantitative", "title": y_title},
        "color": {"field": "run", "type": "nominal", "scale": run_scale(frame), "legend": _legend()},
        "tooltip": [{"field": "run"}, {"field": x}, {"field": y, "format": ".2f"}, {"field": "n"}]}}


def curves(frame: pd.DataFrame, *, title: str, y_title: str) -> dict:
    """One line per run and quantity against the epoch; quantities told apart by the dash."""
    return {"title": title, "mark": {"type": "line", "point": {"size": 12}}, "autosize": FIT_WIDTH, "height": 280,
            "encoding": {
                "x": {"field": "epoch", "type": "quantitative"},
                "y": {"field": "value", "type": "quantitative", "title": y_title, "scale": {"zero": False}},
                "color": {"field": "run", "type": "nominal", "scale": run_scale(frame),
                          "legend": _legend("bottom", columns=1)},
                "strokeDash": {"field": "quantity", "type": "nominal", "title": None,
                               "legend": _legend("bottom", columns=1)},
                "tooltip": [{"field": "run"}, {"field": "quantity"}, {"field": "epoch"},
                            {"field": "value", "format": ".4f"}]}}


def scatter(frame: pd.DataFrame, *, palette: dict, legend: bool, thumbnails: bool, select: str) -> dict:
    """t-SNE points (TSNEDisplay.frame) coloured by category with the display's palette; hover
    shows the class, the data-set index and, with `thumbnails`, the image; clicking selects."""
    tips = [{"field": "class_name", "title": "class"}, {"field": "index", "title": "data-set index"},
            {"field": "group_name", "title": "coarse group"}]
    if thumbnails:
        tips.append({"field": "image"})
    return {"mark": {"type": "circle", "size": 12, "opacity": 0.75}, "autosize": FIT_WIDTH, "height": 460,
            "params": [{"name": select, "select": {"type": "point", "fields": ["row"], "on": "click"}},
                       {"name": "zoom", "select": "interval", "bind": "scales"}],
            "encoding": {
                "x": {"field": "x", "type": "quantitative", "axis": None},
                "y": {"field": "y", "type": "quantitative", "axis": None},
                "color": {"field": "category", "type": "nominal", "title": None,
                          "scale": {"domain": list(palette), "range": list(palette.values())},
                          "legend": {"columns": 4 if len(palette) > 24 else 2, "symbolLimit": 0, "labelLimit": 120,
                                     "orient": "bottom"} if legend else None},
                "size": {"condition": {"param": select, "value": 160, "empty": False}, "value": 12},
                "tooltip": tips}}
