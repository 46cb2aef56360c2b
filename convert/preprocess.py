"""Reference image preprocessing: the definition the server's image endpoint must reproduce.

The server (Rust) and this module implement the same steps, and tests/python/test_preprocess_parity.py
compares them on real photos. A recipe is the [preprocess] table of a model's config.toml:
`color`, `crop_fraction`, `size`, `interpolation`, `mean`, `std`, `layout` (plus `input`, the tensor it feeds).

Definition, step by step (W x H is the image size after step 1):

1. Decode and orient.
   - EXIF orientation is applied first (PIL `ImageOps.exif_transpose`), so W and H are the upright size.
   - The image becomes 8-bit RGB:
     L (grey) -> R = G = B = L;  LA and RGBA -> the alpha channel is dropped (no compositing onto a
     background);  P (palette) -> palette colours, palette transparency ignored;  1 (bilevel) -> 0 or 255;
     16-bit samples (16-bit grey or RGB PNG, PIL modes I;16* and I) -> the high byte, `v >> 8`
     (PIL itself reduces 16-bit RGB PNGs this way; rounding v / 257 instead differs by at most one level);
     other modes (CMYK, YCbCr, ...) -> PIL `convert("RGB")`.
2. Centre square crop.
   - short = min(W, H); side = crop_fraction * short computed in float64 and rounded half to even
     (Python's `round`, Rust's `f64::round_ties_even`; e.g. 0.875 * 300 = 262.5 -> 262, NOT 263), then
     clamped to [1, short].
   - left = (W - side) // 2, top = (H - side) // 2 (integer division, the extra pixel goes right/bottom).
   - The crop is the side x side square at (left, top).
3. Resize the crop to size x size with `interpolation` ("bicubic": PIL `Image.resize(..., BICUBIC)`,
   a Catmull-Rom kernel, a = -0.5, widened by the scale factor when shrinking, i.e. antialiased, no
   `reducing_gap`; "bilinear": PIL BILINEAR, the triangle kernel widened the same way; "nearest": PIL
   NEAREST, the source pixel under each output pixel's centre). The result is 8-bit: each sample is
   rounded and clamped to 0..255. Independent implementations of these filters (fixed-point rounding,
   kernel tails) differ by a level or two on some pixels; the parity test bounds that.
4. Channel order: "RGB" keeps it, "BGR" reverses it.
5. Normalise in float32: y = (float32(x) - mean[c]) / std[c], per channel c in the output channel order
   (multiplying by 1/std[c] instead differs by at most one float32 ulp, and not at all when std is a
   power of two).
6. Layout: "NCHW" gives shape [1, 3, size, size], "NHWC" gives [1, size, size, 3]; C-contiguous float32.

Tensors written by the server's `preprocess` command are this array as raw little-endian float32.
"""

from __future__ import annotations

import io
import tomllib
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Union

import numpy as np
from PIL import Image, ImageOps

ImageSource = Union[str, Path, bytes, BinaryIO, Image.Image]

_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def load_recipe(config_path: Union[str, Path]) -> dict:
    """The [preprocess] table of a model's config.toml."""
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
    if "preprocess" not in config:
        raise ValueError(f"{config_path} has no [preprocess] table")
    return dict(config["preprocess"])


def open_image(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    image = Image.open(source)
    image.load()
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Step 1: upright 8-bit RGB."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        samples = np.asarray(image).astype(np.int64)
        grey = (np.clip(samples, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "F":
        raise ValueError("floating-point images are not supported")
    # L, LA, RGBA, P, PA, 1, CMYK, YCbCr...: Pillow's conversion matches the definition above
    # (alpha dropped, palette looked up, grey replicated).
    return image.convert("RGB")


def crop_box(width: int, height: int, crop_fraction: float) -> tuple[int, int, int]:
    """Step 2: (left, top, side) of the centre square crop."""
    short = min(width, height)
    side = round(float(crop_fraction) * short)  # half to even
    side = max(1, min(short, side))
    return (width - side) // 2, (height - side) // 2, side


def preprocess_rgb(image: Image.Image, recipe: Mapping[str, Any]) -> np.ndarray:
    """Steps 2 to 6 on an upright RGB image."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got {image.mode}")
    interpolation = recipe["interpolation"]
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"unsupported interpolation {interpolation!r}")
    size = int(recipe["size"])
    left, top, side = crop_box(image.width, image.height, recipe["crop_fraction"])
    crop = image.crop((left, top, left + side, top + side))
    resized = crop.resize((size, size), _INTERPOLATIONS[interpolation])
    pixels = np.asarray(resized, dtype=np.uint8)  # H x W x 3, RGB
    color = recipe["color"]
    if color == "BGR":
        pixels = pixels[:, :, ::-1]
    elif color != "RGB":
        raise ValueError(f"unsupported color {color!r}")
    mean = np.asarray(recipe["mean"], dtype=np.float32)
    std = np.asarray(recipe["std"], dtype=np.float32)
    if mean.shape != (3,) or std.shape != (3,):
        raise ValueError("mean and std need one value per channel")
    values = (pixels.astype(np.float32) - mean) / std
    layout = recipe["layout"]
    if layout == "NCHW":
        values = values.transpose(2, 0, 1)
    elif layout != "NHWC":
        raise ValueError(f"unsupported layout {layout!r}")
    return np.ascontiguousarray(values[np.newaxis], dtype=np.float32)


def preprocess(source: ImageSource, recipe: Mapping[str, Any]) -> np.ndarray:
    """The whole definition: an image file (path, bytes, file object or PIL image) to a float32 batch of 1."""
    return preprocess_rgb(to_rgb(open_image(source)), recipe)
