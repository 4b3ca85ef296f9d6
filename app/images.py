"""Thumbnails of the samples a view shows, read row by row from the predictions' image memory map
(only the rows on screen are ever read) and sent as small PNG data URLs or arrays."""

from __future__ import annotations

import base64
import io

import numpy as np
import streamlit as st


def enlarge(image: np.ndarray, min_side: int) -> np.ndarray:
    """An HxWxC uint8 image ready for display: grey when one channel, enlarged by an integer factor
    (nearest neighbour, so 8x8 digits stay sharp) to at least `min_side` pixels."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    factor = max(1, -(-min_side // max(img.shape[:2])))
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def data_url(image: np.ndarray, min_side: int = 32, fmt: str = "PNG") -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(enlarge(image, min_side)).save(buf, format=fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


@st.cache_data(show_spinner=False, max_entries=64)
def urls(key, rows: tuple, _preds, min_side: int = 32, fmt: str = "PNG") -> list[str] | None:
    """Data URLs of the images of `rows` of the predictions `_preds` (whose run files `key` stands
    for them in the cache), or None when they carry no images."""
    images = _preds.images
    if images is None:
        return None
    picked = images[np.asarray(rows, dtype=np.int64)] if rows else []
    return [data_url(img, min_side, fmt) for img in picked]


def image(preds, row: int, min_side: int = 160) -> np.ndarray | None:
    """One sample's image, enlarged for display, or None without images."""
    images = preds.images
    return None if images is None else enlarge(images[int(row)], min_side)
