"""What re-encoding a lossy WebP photo costs: as a PNG (what core.image_io did) against a JPEG of quality 95 (what
it does), side by side on one synthetic photo: bytes sent to the model and seconds to encode (medians).

    python -m bench.reencode [--width 4000 --height 3000 --quality 90 --rounds 3]
"""
from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image, ImageFilter

from bench import reproduce
from core import image_io
from pipeline.flags import non_negative_int, positive_int


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth light and shade plus sensor noise, slightly blurred: a phone photo of paper, in its statistics."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = (180 + 40 * np.sin(x / 700) + 30 * np.cos(y / 500))[..., None] * np.array([1, 0.95, 0.9])
    pixels = np.clip(base + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.8))


def webp_quality(text: str) -> int:
    """argparse type of ``--quality``: a WebP quality, 0 to 100."""
    quality = non_negative_int(text)
    if quality > 100:
        raise argparse.ArgumentTypeError(f"must be at most 100, got {quality}")
    return quality


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=positive_int, default=4000)
    p.add_argument("--height", type=positive_int, default=3000)
    p.add_argument("--quality", type=webp_quality, default=90, help="the WebP's quality, 0 to 100")
    p.add_argument("--rounds", type=positive_int, default=3)
    args = p.parse_args(argv)
    buf = io.BytesIO()
    photo(args.width, args.height).save(buf, format="WEBP", quality=args.quality)
    webp = buf.getvalue()
    decoded = Image.open(io.BytesIO(webp))
    decoded.load()
    results = {}
    for _ in range(args.rounds):   # alternately, so that a noisy machine weighs on both alike
        for name, encode in (("PNG", image_io.to_png), ("JPEG", image_io.to_jpeg)):
            started = time.perf_counter()
            data = encode(decoded)
            results.setdefault(name, []).append((time.perf_counter() - started, len(data)))
    print(f"a lossy WebP of {args.width}×{args.height} px, quality {args.quality}: {len(webp):,} bytes")
    for name, runs in results.items():
        seconds = statistics.median(t for t, _ in runs)
        size = runs[0][1]
        print(f"  as {name:4}: {size:>12,} bytes ({size / len(webp):5.1f}× the WebP), "
              f"{seconds:.2f} s to encode (median of {len(runs)})")
    png, jpeg = (statistics.median(t for t, _ in results[n]) for n in ("PNG", "JPEG"))
    print(f"JPEG against PNG: {results['JPEG'][0][1] / results['PNG'][0][1]:.2f}× the bytes, "
          f"{jpeg / png:.2f}× the time")
    chosen = ["--width", args.width, "--height", args.height, "--quality", args.quality, "--rounds", args.rounds]
    print("reproduce: " + reproduce.command("bench.reencode", [str(a) for a in chosen]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
