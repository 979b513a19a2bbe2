"""Image references of a sample (a path, raw bytes, an in-memory PIL image, or a `Marked` file whose boxes are drawn
on load), opened with a pixel limit that is checked before anything is decoded."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from ..errors import SnError


@dataclass(frozen=True)
class Marked:
    """An image file with boxes drawn on it when loaded: ((x, y, w, h), colour) pairs (InstaOrder's instance pairs)."""

    path: Path
    boxes: tuple[tuple[tuple[float, float, float, float], str], ...]

    def draw(self, img: Image.Image) -> Image.Image:
        img = img.convert("RGB")
        pen = ImageDraw.Draw(img)
        width = max(2, round(min(img.size) / 160))  # visible at any resolution, never hiding a small instance
        for (x, y, w, h), colour in self.boxes:
            pen.rectangle((x, y, x + w, y + h), outline=colour, width=width)
        return img

    def marks(self) -> bytes:
        return repr(self.boxes).encode()


def _check_pixels(img: Image.Image, limit: int, sample_id: str, where: str) -> None:
    if img.width * img.height > limit:
        raise SnError(f"sample {sample_id}: image{where} is {img.width}x{img.height} = "
                      f"{img.width * img.height / 1e6:.1f} megapixels, over the limit of {limit / 1e6:g} MP "
                      "(raise max_pixels in the spec or $SN_MAX_PIXELS if the image is genuine)")


def _where(ref: Any) -> str:
    return "" if isinstance(ref, bytes | Image.Image) else f" {ref.path if isinstance(ref, Marked) else ref}"


def open_image(ref: Any, limit: int, sample_id: str) -> Image.Image:
    """The decoded RGB image; its size is checked against `limit` from the header, before decoding."""
    if isinstance(ref, Image.Image):
        _check_pixels(ref, limit, sample_id, "")
        return ref.convert("RGB")
    path = ref.path if isinstance(ref, Marked) else ref
    try:
        with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as img:
            _check_pixels(img, limit, sample_id, _where(ref))
            rgb = img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise SnError(f"sample {sample_id}: cannot read image{_where(ref)} ({exc})") from None
    return ref.draw(rgb) if isinstance(ref, Marked) else rgb


def image_digest(ref: Any, limit: int, sample_id: str) -> bytes:
    """Content of the image for hashing; also proves the image is readable and within the pixel limit."""
    if isinstance(ref, Image.Image):
        _check_pixels(ref, limit, sample_id, "")
        return hashlib.sha256(np.asarray(ref.convert("RGB")).tobytes()).digest()
    path = ref.path if isinstance(ref, Marked) else ref
    try:
        data = path if isinstance(path, bytes) else Path(path).read_bytes()
    except OSError as exc:
        raise SnError(f"sample {sample_id}: cannot read image {path} ({exc.strerror})") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_pixels(img, limit, sample_id, _where(ref))
            img.verify()
    except SnError:
        raise
    except Exception as exc:  # PIL raises many types for corrupt files
        raise SnError(f"sample {sample_id}: unreadable image{_where(ref)} ({exc})") from None
    return hashlib.sha256(data + (ref.marks() if isinstance(ref, Marked) else b"")).digest()
