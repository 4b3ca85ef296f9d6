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
    return img if factor == 1 else np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def shrink(image: np.ndarray, side: int) -> np.ndarray:
    """The image reduced to at most `side` pixels on its longer side (box filter), else as it is."""
    img = np.asarray(image)
    if max(img.shape[:2]) <= side:
        return img
    from PIL import Image

    h, w = img.shape[:2]
    scale = side / max(h, w)
    pil = Image.fromarray(img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img)
    return np.asarray(pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BOX))


def data_url(image: np.ndarray, min_side: int = 32, fmt: str = "PNG", max_side: int | None = None) -> str:
    """A data URL of the image: enlarged to at least `min_side`, reduced to at most `max_side`."""
    from PIL import Image

    img = enlarge(image, min_side) if max_side is None else enlarge(shrink(image, max_side), min_side)
    buf = io.BytesIO()
    options = {"JPEG": {"quality": 60}, "WEBP": {"quality": 60, "method": 0}}.get(fmt, {})
    Image.fromarray(img).save(buf, format=fmt, **options)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


@st.cache_data(show_spinner=False, max_entries=64)
def urls(key, rows: tuple, _preds, min_side: int = 32, fmt: str = "PNG") -> list | None:
    """Data URLs of the images of `rows` of the predictions `_preds` (whose run files `key` stands
    for them in the cache), or None when they carry no images."""
    images = _preds.images
    if images is None:
        return None
    picked = images[np.asarray(rows, dtype=np.int64)] if rows else []
    return [data_url(img, min_side, fmt) for img in picked]


CHUNK = 1024  # rows read from the image memory map at a time (12 MB of 64-px thumbnails)


@st.cache_data(show_spinner=False, max_entries=16)
def _encoded(digest: str, _preds, _rows, min_side: int, fmt: str, max_side: int | None) -> list[str]:
    """Data URLs of the images of `_rows` (which `digest` identifies); WebP of 10,000 32-px images
    takes ~1 s. Read a chunk at a time, each through a new memory map that is dropped after it,
    so the server never holds more than a chunk of pixels."""
    out = []
    for s in range(0, len(_rows), CHUNK):
        out += [data_url(img, min_side, fmt, max_side) for img in _preds.images[_rows[s:s + CHUNK]]]
    return out


def shared_urls(preds, rows, *, min_side: int = 32, fmt: str = "WEBP", max_side: int | None = 32) -> list | None:
    """Data URLs of the images of `rows`, cached by the images' content (hashed a chunk at a time):
    runs of one data set share their thumbnails, so a run added to a page encodes nothing new."""
    import hashlib

    if preds.images is None:
        return None
    rows = np.asarray(rows, dtype=np.int64)
    h = hashlib.blake2b(digest_size=16)
    for s in range(0, rows.size, CHUNK):
        block = np.ascontiguousarray(preds.images[rows[s:s + CHUNK]])
        h.update(block.data)
    shape = preds.images.shape[1:]
    return _encoded(f"{h.hexdigest()}:{rows.size}:{shape}", preds, rows, min_side, fmt, max_side)


def image(preds, row: int, min_side: int = 160) -> np.ndarray | None:
    """One sample's image, enlarged for display, or None without images."""
    images = preds.images
    return None if images is None else enlarge(images[int(row)], min_side)
