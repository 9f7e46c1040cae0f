#!/usr/bin/python3
"""Writes the image-decoding fixtures of tests/test_imgio.c with Pillow, an independent encoder/decoder.

Each image holds the same 16x12 pattern; <name>.rgb next to it holds what Pillow decodes (interleaved RGB bytes),
which genie's decoder must reproduce: exactly for PNG, within a small tolerance for JPEG (both use libjpeg-turbo,
but Pillow and TurboJPEG may pick different upsampling paths).
Run with Debian's python3 (python3-pil): /usr/bin/python3 scripts/make_image_fixtures.py
"""
import os
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "images")
W, H = 16, 12


def pattern():
    im = Image.new("RGB", (W, H))
    im.putdata([((x * 16) % 256, (y * 20) % 256, (x * y * 3 + 40) % 256) for y in range(H) for x in range(W)])
    return im


def save(im, name, **kw):
    path = os.path.join(OUT, name)
    im.save(path, **kw)
    with open(path + ".rgb", "wb") as f:
        f.write(Image.open(path).convert("RGB").tobytes())


def main():
    os.makedirs(OUT, exist_ok=True)
    rgb = pattern()
    save(rgb, "rgb.png")
    save(rgb.convert("L"), "gray.png")
    save(rgb.convert("P", palette=Image.ADAPTIVE, colors=16), "palette.png")
    rgba = rgb.copy()
    rgba.putalpha(255)
    save(rgba, "rgba.png")
    save(rgb, "rgb444.jpg", quality=95, subsampling=0)
    save(rgb, "rgb420.jpg", quality=90, subsampling=2)
    save(rgb.convert("L"), "gray.jpg", quality=95)
    # Pillow writes CMYK JPEGs with Adobe's inverted convention; its own CMYK->RGB ignores that, so the
    # expected pixels are those of the RGB source instead.
    rgb.convert("CMYK").save(os.path.join(OUT, "cmyk.jpg"), quality=100)
    with open(os.path.join(OUT, "cmyk.jpg.rgb"), "wb") as f:
        f.write(rgb.tobytes())
    big = Image.new("RGB", (96, 64))
    big.putdata([((x * 2) % 256, (y * 3) % 256, 128) for y in range(64) for x in range(96)])
    save(big, "big.jpg", quality=95, subsampling=0)


if __name__ == "__main__":
    main()
