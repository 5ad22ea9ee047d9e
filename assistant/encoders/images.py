"""Decoding user images into RGB PIL images, with clear errors for bad files."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from assistant.errors import BadInputError
from assistant.events import ImageInput

# Larger images are shrunk before they reach the processor: no VLM looks at more
# than this, and it bounds memory for a 50-megapixel photo.
MAX_SIDE = 2048
# Images that would still be larger than this when decoded are refused before decoding
# (a JPEG is decoded reduced first, so only other formats meet this limit in practice).
MAX_DECODE_PIXELS = 64_000_000
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def load_image(image: ImageInput, max_side: int = MAX_SIDE) -> Image.Image:
    """Decode ``image`` to an RGB ``PIL.Image`` or raise ``BadInputError``."""
    return decode_image(read_image_bytes(image), image.name, max_side)


def read_image_bytes(image: ImageInput) -> bytes:
    """The encoded bytes of ``image`` (what the conversation history stores)."""
    try:
        if image.path is not None:
            with open(image.path, "rb") as fh:
                data = fh.read()
        else:
            data = image.data or b""
    except FileNotFoundError:
        raise BadInputError(f"Image '{image.name}' was not found.") from None
    except IsADirectoryError:
        raise BadInputError(f"'{image.name}' is a folder, not an image.") from None
    except OSError as exc:
        raise BadInputError(f"Image '{image.name}' could not be read: {exc.strerror or exc}.") from None
    if not data:
        raise BadInputError(f"Image '{image.name}' is empty.")
    return data


def decode_image(data: bytes, name: str, max_side: int = MAX_SIDE) -> Image.Image:
    """Encoded bytes to an RGB ``PIL.Image``, or ``BadInputError`` naming the image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale when that is enough
            width, height = im.size
            if width * height > MAX_DECODE_PIXELS:
                raise BadInputError(
                    f"Image '{name}' is {width}×{height} ({width * height / 1e6:.0f} megapixels); the largest "
                    f"this app opens is {MAX_DECODE_PIXELS / 1e6:.0f} megapixels. Save a smaller copy and try again."
                )
            im.load()
            im = ImageOps.exif_transpose(im)  # photos from phones carry their rotation in EXIF
            if im.mode in _HIGH_DEPTH_MODES:
                im = _to_8bit(im)
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            rgb = im.convert("RGB")
    except UnidentifiedImageError:
        raise BadInputError(f"'{name}' is not an image file this app can read.") from None
    except Image.DecompressionBombError:
        raise BadInputError(f"Image '{name}' is far larger than the {MAX_DECODE_PIXELS / 1e6:.0f} megapixels this app "
                            "opens. Save a smaller copy and try again.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"Image '{name}' is damaged and cannot be decoded ({exc}).") from None
    if rgb.width < 1 or rgb.height < 1:
        raise BadInputError(f"Image '{name}' has no pixels.")
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return rgb


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit and floating-point grey scaled to 8 bits (a plain ``convert`` clips
    everything above 255 to white)."""
    values = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16"):
        scaled = values / 257.0
    elif im.mode == "F" and np.nanmax(values, initial=0.0) <= 1.0 and np.nanmin(values, initial=0.0) >= 0.0:
        scaled = values * 255.0  # floating point in 0..1, the usual convention
    elif im.mode == "I" and 0 <= np.min(values, initial=0) and np.max(values, initial=0) <= 255:
        scaled = values
    elif im.mode == "I" and 0 <= np.min(values, initial=0) and np.max(values, initial=0) <= 65535:
        scaled = values / 257.0  # 16-bit data opened as 32-bit
    else:  # anything else: stretch what is there over the 8-bit range
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.nan_to_num(np.clip(np.rint(scaled), 0, 255)).astype(np.uint8), "L")


def encode_jpeg(rgb: np.ndarray, quality: int = 88) -> bytes:
    """An RGB frame as JPEG bytes (how camera frames are kept in the history)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
