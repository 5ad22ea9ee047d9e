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
            im.load()
            im = ImageOps.exif_transpose(im)  # photos from phones carry their rotation in EXIF
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            rgb = im.convert("RGB")
    except UnidentifiedImageError:
        raise BadInputError(f"'{name}' is not an image file this app can read.") from None
    except Image.DecompressionBombError:
        raise BadInputError(f"Image '{name}' is too large to open safely.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"Image '{name}' is damaged and cannot be decoded ({exc}).") from None
    if rgb.width < 1 or rgb.height < 1:
        raise BadInputError(f"Image '{name}' has no pixels.")
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return rgb


def encode_jpeg(rgb: np.ndarray, quality: int = 88) -> bytes:
    """An RGB frame as JPEG bytes (how camera frames are kept in the history)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
