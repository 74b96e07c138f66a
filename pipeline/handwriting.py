"""Letters that look written, not typeset: stroke skeletons re-drawn with pen dynamics by simulated writers.

The 27 letters' strokes are the centre lines of the handwriting-like fonts' glyphs (``pipeline.skeleton``,
computed once per face). A :class:`Writer` is one set of style parameters (the face they learnt the letters
from, slant, size, proportions, pen width and pressure, wobble, hooks at stroke ends, ink and paper, scanner)
that writes all 27 letters; :func:`write_letter` draws one letter by one writer: the strokes are bent by a
smooth random field, shifted a little one from another, lengthened or shortened, given hooks, slanted, then
drawn with a round pen whose width follows the pressure and thins at the stroke ends; the result is put on
off-white paper, cropped tight to the ink with a jittered margin, blurred and JPEG-compressed like a scan.
Everything is a function of the random generators passed in: the same seeds give the same pixels.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline import skeleton

SUPERSAMPLE = 2   # strokes are drawn at this multiple of the output size, then reduced (anti-aliasing)
# Writers lean right: the scanned letters' ink leans 0.114 on average (sd 0.360; x shift per unit of height, from
# its second moments, `python -m bench.ink_boxes`), the letters of writers leaning N(0, 0.12) 0.009 (sd 0.317); with
# these 0.102 (sd 0.384). Measured on real writers (docs/measurements.md): +1 point of top-1 on each of three
# seeds; an sd of 0.18 scored the same.
WRITER_LEAN = 0.10
WRITER_LEAN_SD = 0.25


@dataclass(frozen=True)
class Writer:
    """One writer's style: shared by every letter they write."""
    face: str                 # font file path whose letter shapes this writer learnt
    other_faces: tuple        # faces some of their letters come from instead
    loyalty: float            # share of letters drawn from ``face``
    em_px: float              # size of their writing (px per em)
    slant: float              # shear: x shift per unit of height (positive leans right)
    rotation: float           # degrees
    aspect: float             # horizontal stretch
    pen_em: float             # pen width, em
    pressure: float           # relative width variation along a stroke
    taper: float              # how much stroke ends thin
    wobble: float             # amplitude of the smooth bending of a letter, em
    tremor: float             # amplitude of the fast jitter along a stroke, em
    detach: float             # how far strokes of one letter drift apart, em
    hook: float               # probability of a hook at a stroke end
    overshoot: float          # relative lengthening / shortening of strokes
    ink: float                # ink tone (0 black .. 255 white)
    paper: float              # paper tone
    blur: float               # scanner blur sigma (px)
    jpeg: int                 # JPEG quality of the scan
    noise: float              # sensor noise (grey levels)


def sample_writer(rng: np.random.Generator, faces: list) -> Writer:
    """A random writer using ``faces`` (objects with ``.path``; the first ones are preferred as their hand)."""
    if not faces:
        raise ValueError("a writer needs at least one face to learn the letters from")
    paths = tuple(f.path for f in faces)
    face = paths[int(rng.integers(len(paths)))]
    return Writer(
        face=face, other_faces=paths, loyalty=float(rng.uniform(0.6, 1.0)),
        em_px=float(np.exp(rng.normal(np.log(105), 0.3))), slant=float(rng.normal(WRITER_LEAN, WRITER_LEAN_SD)),
        rotation=float(rng.normal(0, 4)), aspect=float(np.exp(rng.normal(0, 0.12))),
        pen_em=float(np.exp(rng.normal(np.log(0.08), 0.3))), pressure=float(rng.uniform(0.05, 0.45)),
        taper=float(rng.uniform(0.0, 0.7)), wobble=float(rng.uniform(0.01, 0.05)),
        tremor=float(rng.uniform(0.0, 0.006)), detach=float(rng.uniform(0.0, 0.04)),
        hook=float(rng.uniform(0.0, 0.5)), overshoot=float(rng.uniform(0.0, 0.12)),
        ink=float(rng.uniform(0, 90)), paper=float(rng.uniform(222, 254)),
        blur=float(rng.uniform(0.0, 1.0)), jpeg=int(rng.integers(35, 96)), noise=float(rng.uniform(0, 8)),
    )


@lru_cache(maxsize=None)
def letter_strokes(face_path: str, glyph: str) -> tuple:
    """The skeleton strokes of ``glyph`` in the face, upright (cached: thinning is the slow part)."""
    lean = face_slant(face_path)
    return tuple(s + np.stack([lean * s[:, 1], np.zeros(len(s))], axis=1)
                 for s in skeleton.glyph_strokes(face_path, glyph))


@lru_cache(maxsize=None)
def face_slant(face_path: str) -> float:
    """How far the face leans right (x shift per unit of height): writers get their own slant, so the face's is
    taken out. Measured on ו ן ך, nearly straight down strokes in every face."""
    leans = []
    for glyph in "וןך":
        pts = np.vstack(skeleton.glyph_strokes(face_path, glyph))
        x, y = pts[:, 0] - pts[:, 0].mean(), pts[:, 1] - pts[:, 1].mean()
        leans.append(-float((x * y).sum() / max((y * y).sum(), 1e-9)))
    return float(np.median(leans))


def _smooth_noise(rng: np.random.Generator, n: int, correlation: float) -> np.ndarray:
    """``n`` values of unit-variance noise correlated over about ``correlation`` samples."""
    if n <= 1:
        return rng.normal(0, 1, n)
    sigma = max(0.5, correlation)
    radius = int(3 * sigma)
    raw = rng.normal(0, 1, n + 2 * radius)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    out = np.convolve(raw, kernel / np.sqrt((kernel ** 2).sum()), mode="valid")
    return out[:n]


def _bend(points: np.ndarray, rng_field: list) -> np.ndarray:
    """Applies a smooth displacement field (a sum of random sinusoids) to em-unit points."""
    out = points.copy()
    for kx, ky, phase, ax, ay in rng_field:
        arg = points[:, 0] * kx + points[:, 1] * ky + phase
        out[:, 0] += ax * np.sin(arg)
        out[:, 1] += ay * np.sin(arg)
    return out


def _hook(points: np.ndarray, at_start: bool, rng: np.random.Generator, size: float) -> np.ndarray:
    """The stroke with a short curl added at one end (the pen's approach or lift)."""
    pts = points[::-1] if at_start else points
    if len(pts) < 3:
        return points
    direction = pts[-1] - pts[-3]
    heading = np.arctan2(direction[1], direction[0])
    turn = rng.choice([-1, 1]) * rng.uniform(0.6, 1.8)        # total turn over the hook (radians)
    n = 6
    step = size / n
    extra, p = [], pts[-1].copy()
    for k in range(1, n + 1):
        angle = heading + turn * k / n
        p = p + step * np.array([np.cos(angle), np.sin(angle)])
        extra.append(p.copy())
    pts = np.vstack([pts, extra])
    return pts[::-1] if at_start else pts


def _adjust_length(points: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Lengthens (extrapolating the end direction) or shortens each end of the stroke by up to ``amount``."""
    if len(points) < 4 or amount <= 0:
        return points
    total = skeleton.length(points)
    for end in (0, 1):
        change = rng.uniform(-amount, amount) * total
        pts = points if end else points[::-1]
        if change >= 0:
            direction = pts[-1] - pts[-2]
            norm = np.hypot(*direction) or 1.0
            pts = np.vstack([pts, pts[-1] + direction / norm * change])
        else:
            seg = np.hypot(*np.diff(pts, axis=0).T)
            remaining = np.cumsum(seg[::-1])
            cut = int(np.searchsorted(remaining, -change))
            pts = pts[:max(2, len(pts) - cut)]
        points = pts if end else pts[::-1]
    return points


def _place(strokes: list, writer: Writer, rng: np.random.Generator) -> list:
    """The writer's version of the letter's strokes, in em units: bent, detached, re-sized, hooked, slanted."""
    field = [(rng.normal(0, 3.0), rng.normal(0, 3.0), rng.uniform(0, 2 * np.pi),
              rng.normal(0, writer.wobble), rng.normal(0, writer.wobble)) for _ in range(3)]
    slant = writer.slant + rng.normal(0, 0.05)
    angle = np.radians(writer.rotation + rng.normal(0, 3))
    aspect = writer.aspect * np.exp(rng.normal(0, 0.06))
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) @ np.array([[aspect, -slant], [0, 1.0]])
    out = []
    for stroke in strokes:
        pts = _adjust_length(np.asarray(stroke), rng, writer.overshoot)
        pts = _bend(pts, field) + rng.normal(0, writer.detach, 2)
        for at_start in (True, False):
            if rng.random() < writer.hook * 0.5:
                pts = _hook(pts, at_start, rng, rng.uniform(0.05, 0.12))
        pts = skeleton.resample(pts, 0.01)
        tremor = np.stack([_smooth_noise(rng, len(pts), 3.0), _smooth_noise(rng, len(pts), 3.0)], axis=1)
        pts = pts + tremor * writer.tremor
        out.append(pts @ matrix.T)
    return out


def _draw(strokes: list, writer: Writer, rng: np.random.Generator, scale: float) -> np.ndarray:
    """The strokes (em units) drawn with a round pen at ``scale`` px per em → ink coverage [h, w] in [0, 1]."""
    s = scale * SUPERSAMPLE
    pen = writer.pen_em * s * np.exp(rng.normal(0, 0.1))
    everything = np.vstack(strokes)
    margin = pen * 2 + 4
    origin = everything.min(axis=0) * s - margin
    size = np.ceil(everything.max(axis=0) * s - origin + margin).astype(int)
    size = ((size + SUPERSAMPLE - 1) // SUPERSAMPLE) * SUPERSAMPLE
    img = Image.new("L", (int(size[0]), int(size[1])), 0)
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        pts = skeleton.resample(stroke * s - origin, max(0.5, pen / 6))
        n = len(pts)
        from_start = np.arange(n) / max(1, n - 1)
        ends = np.minimum(from_start, 1 - from_start) * skeleton.length(pts) / max(pen, 1.0)
        width = pen * (1 + writer.pressure * _smooth_noise(rng, n, n / 4))
        width *= 1 - writer.taper * np.exp(-ends / 1.5)
        width = np.maximum(width, SUPERSAMPLE * 0.7)
        for (x, y), w in zip(pts, width):
            r = w / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    img = img.resize((img.width // SUPERSAMPLE, img.height // SUPERSAMPLE), Image.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0


def _crop(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tight crop around the ink, each side's margin jittered by a few pixels (sometimes a pixel into it)."""
    ys, xs = np.nonzero(ink > 0.25)
    if len(ys) == 0:
        return ink
    h, w = ink.shape
    longest = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    margins = rng.integers(-1, max(2, int(longest * 0.06)) + 1, size=4)
    pad = int(max(0, margins.max()))
    ink = np.pad(ink, pad)
    top, bottom = ys.min() + pad - margins[0], ys.max() + 1 + pad + margins[1]
    left, right = xs.min() + pad - margins[2], xs.max() + 1 + pad + margins[3]
    # Margins into both sides of a line one or two pixels thin would cut it away: keep a pixel of it.
    top, left = min(top, ys.max() + pad), min(left, xs.max() + pad)
    bottom, right = max(bottom, ys.min() + 1 + pad, top + 1), max(right, xs.min() + 1 + pad, left + 1)
    return ink[max(0, top):min(h + 2 * pad, bottom), max(0, left):min(w + 2 * pad, right)]


def _scan(ink: np.ndarray, writer: Writer, rng: np.random.Generator) -> Image.Image:
    """Ink coverage → a grayscale scan: off-white paper with a gentle gradient, ink tone, noise, blur, JPEG."""
    h, w = ink.shape
    yy, xx = np.mgrid[0:h, 0:w]
    paper = writer.paper + rng.normal(0, 4) + rng.normal(0, 6) * (xx / max(w, 1) - 0.5) \
        + rng.normal(0, 6) * (yy / max(h, 1) - 0.5)
    paper = np.minimum(paper, 252)
    strength = 1 - 0.25 * rng.random() * np.clip(_field(rng, ink.shape), 0, 1)    # a drying pen, uneven
    out = paper + (writer.ink + rng.normal(0, 8) - paper) * ink * strength
    if rng.random() < 0.1:   # a bit of a printed form line along one edge
        row = int(rng.integers(0, 3)) if rng.random() < 0.5 else h - 1 - int(rng.integers(0, 3))
        start, stop = sorted(rng.integers(0, w + 1, 2))
        out[row, start:stop] = np.minimum(out[row, start:stop], rng.uniform(90, 170))
    out = out + rng.normal(0, writer.noise + 1e-6, out.shape)
    img = Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8), "L")
    blur = writer.blur * rng.uniform(0.6, 1.2)
    if blur > 0.25:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(np.clip(writer.jpeg + rng.integers(-5, 6), 20, 98)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def _field(rng: np.random.Generator, shape) -> np.ndarray:
    """A smooth random field in about [0, 1] (a few random bumps)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros(shape, np.float32)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.2, 0.6) * max(h, w)
        out += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return out / 3


def write_letter(glyph: str, writer: Writer, rng: np.random.Generator) -> Image.Image:
    """One letter written by ``writer``: a tight grayscale crop, dark ink on off-white paper."""
    face = writer.face if rng.random() < writer.loyalty else writer.other_faces[
        int(rng.integers(len(writer.other_faces)))]
    strokes = _place(list(letter_strokes(face, glyph)), writer, rng)
    scale = writer.em_px * np.exp(rng.normal(0, 0.08))
    ink = _crop(_draw(strokes, writer, rng, scale), rng)
    return _scan(ink, writer, rng)
