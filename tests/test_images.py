"""Decoding what people attach: high bit depths scaled (not clipped), huge images refused or decoded reduced."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from assistant.encoders.images import MAX_DECODE_PIXELS, MAX_SIDE, decode_image
from assistant.errors import BadInputError


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def gradient(width=256, height=64) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, width), (height, 1))


@pytest.mark.parametrize("case", ["png-16-bit-grey", "tiff-float-0-1", "tiff-32-bit-int-16-bit-data"])
def test_high_bit_depth_grey_keeps_its_picture(case):
    ramp = gradient()
    if case == "png-16-bit-grey":
        image, fmt = Image.fromarray((ramp * 65535).astype(np.uint16)), "PNG"
    elif case == "tiff-float-0-1":
        image, fmt = Image.fromarray(ramp.astype(np.float32), "F"), "TIFF"
    else:
        image, fmt = Image.fromarray((ramp * 65535).astype(np.int32), "I"), "TIFF"
    rgb = np.asarray(decode_image(encoded(image, fmt), case))
    assert rgb.shape == (64, 256, 3)
    row = rgb[0, :, 0].astype(int)
    assert row[0] <= 2 and row[-1] >= 253  # black to white, not all white
    assert abs(int(row[128]) - 128) <= 3  # the middle is mid-grey
    assert np.all(np.diff(row) >= 0)  # and it still rises left to right


def test_sixteen_bit_rgb_png_is_read_as_colour():
    pixels = np.zeros((8, 8, 3), np.uint16)
    pixels[..., 0] = 65535  # pure red at 16 bits a channel
    data = io.BytesIO()
    import struct
    import zlib

    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(8))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    data.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    rgb = np.asarray(decode_image(data.getvalue(), "red16.png"))
    assert tuple(rgb[0, 0]) == (255, 0, 0)


def test_a_huge_image_is_refused_before_it_is_decoded():
    side = int(MAX_DECODE_PIXELS ** 0.5) + 1000  # a 1-bit PNG: tiny file, enormous picture
    data = encoded(Image.new("1", (side, side)), "PNG")
    with pytest.raises(BadInputError, match="megapixels"):
        decode_image(data, "poster.png")


def test_a_large_jpeg_is_decoded_reduced():
    big = Image.new("RGB", (6000, 4000), (30, 120, 200))
    rgb = decode_image(encoded(big, "JPEG"), "photo.jpg")
    assert max(rgb.size) == MAX_SIDE and rgb.size[0] / rgb.size[1] == pytest.approx(1.5, rel=0.01)
    assert np.abs(np.asarray(rgb).astype(int).mean(axis=(0, 1)) - (30, 120, 200)).max() < 4
