"""A font glyph → its centre lines as pen strokes: thinning (Zhang–Suen) and tracing of the one-pixel skeleton.

The strokes are polylines in em units (1 = the font size; x to the right, y down, origin at the glyph's centre), so
that a short letter (י) stays short next to a long one (ן) when both are drawn at one writer's size.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RENDER_SIZE = 128        # font size (px) the glyphs are thinned at
MIN_STROKE_EM = 0.07     # shorter branches with a free end are thinning spurs, not strokes
MIN_LINK_EM = 0.05       # shorter pieces between crossings are thinning debris (the pen covers them)
STEP_EM = 0.02           # spacing of the points of a traced stroke
_OFFSETS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))   # P2..P9, clockwise from north


def glyph_mask(font_path: str, glyph: str, size: int = RENDER_SIZE) -> np.ndarray:
    """The glyph's ink as a boolean array on a canvas with room around it."""
    font = ImageFont.truetype(font_path, size)
    canvas = int(size * 2.2)
    img = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(img).text((canvas / 2, canvas / 2), glyph, font=font, fill=255, anchor="mm")
    return np.asarray(img) > 127


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang–Suen thinning: the mask reduced to 8-connected lines one pixel wide."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            h, w = img.shape
            p = [img[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] for dy, dx in _OFFSETS]   # P2..P9
            centre = img[1:-1, 1:-1]
            count = sum(q.astype(np.int32) for q in p)
            transitions = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.int32) for i in range(8))
            p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
            if step == 0:
                side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (centre == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if remove.any():
                centre[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def trace(skeleton: np.ndarray) -> list[np.ndarray]:
    """The skeleton's pixels as polylines ([n, 2] arrays of (x, y)), following each line straight through its
    crossings. Branches that start at a crossing begin at the pixel of the line they leave."""
    pixels = {(int(y), int(x)) for y, x in zip(*np.nonzero(skeleton))}

    def neighbours(p):
        return [(p[0] + dy, p[1] + dx) for dy, dx in _OFFSETS if (p[0] + dy, p[1] + dx) in pixels]

    visited: set = set()
    paths = []
    # Free ends first (a stroke is best started at its end), then whatever is left (loops, branches).
    ends = sorted(p for p in pixels if len(neighbours(p)) == 1)
    while True:
        start = next((p for p in ends if p not in visited), None)
        if start is None:
            rest = sorted(pixels - visited)
            if not rest:
                break
            start = min(rest, key=lambda q: (sum(n not in visited for n in neighbours(q)), q))
        path = [start]
        attached = [n for n in neighbours(start) if n in visited]
        if attached:
            path.insert(0, attached[0])
        visited.add(start)
        while True:
            here = path[-1]
            options = [n for n in neighbours(here) if n not in visited]
            if not options:
                closing = [n for n in neighbours(here) if n in visited and n not in path[-3:]]
                if closing and len(path) > 2:
                    path.append(closing[0])
                break
            back = np.array(path[-1]) - np.array(path[max(0, len(path) - 4)])
            nxt = max(options, key=lambda n: (float(np.dot(np.array(n) - here, back))
                                              / (np.hypot(*back) * np.hypot(n[0] - here[0], n[1] - here[1]) or 1.0),
                                              -abs(n[0] - here[0]) - abs(n[1] - here[1]), n))
            path.append(nxt)
            visited.add(nxt)
        paths.append(np.array([(x, y) for y, x in path], dtype=np.float64))
    return paths


def resample(points: np.ndarray, step: float) -> np.ndarray:
    """The polyline with points every ``step`` along its length (the ends kept)."""
    if len(points) < 2:
        return points.copy()
    seg = np.hypot(*np.diff(points, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] == 0:
        return points[:1].copy()
    n = max(2, int(round(s[-1] / step)) + 1)
    t = np.linspace(0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=1)


def smooth(points: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along the polyline (in points), ends pinned; closed loops stay closed."""
    if len(points) < 3 or sigma <= 0:
        return points.copy()
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    closed = np.hypot(*(points[0] - points[-1])) < 2.0
    mode = "wrap" if closed else "edge"
    padded = np.pad(points[:-1] if closed else points, ((radius, radius), (0, 0)), mode=mode)
    out = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(2)], axis=1)
    if closed:
        return np.vstack([out, out[:1]])
    out[0], out[-1] = points[0], points[-1]
    return out


def length(points: np.ndarray) -> float:
    return float(np.hypot(*np.diff(points, axis=0).T).sum()) if len(points) > 1 else 0.0


def glyph_strokes(font_path: str, glyph: str, size: int = RENDER_SIZE) -> list[np.ndarray]:
    """The centre lines of ``glyph`` in ``font_path``, smoothed, in em units around the glyph's centre."""
    mask = glyph_mask(font_path, glyph, size)
    if not mask.any():
        raise ValueError(f"{font_path} draws nothing for {glyph!r}")
    skeleton = thin(mask)
    ends = {(int(y), int(x)) for y, x in zip(*np.nonzero(skeleton))
            if skeleton[max(0, y - 1):y + 2, max(0, x - 1):x + 2].sum() == 2}
    strokes = []
    for path in trace(skeleton):
        free_end = any((int(y), int(x)) in ends for x, y in (path[0], path[-1]))
        if len(path) < 2 or length(path) < MIN_LINK_EM * size or (free_end and length(path) < MIN_STROKE_EM * size):
            continue
        strokes.append(smooth(resample(path, STEP_EM * size), 1.5))
    if not strokes:   # a glyph made only of short marks: keep its longest one
        strokes = [resample(max(trace(skeleton), key=length), STEP_EM * size)]
    ys, xs = np.nonzero(mask)
    centre = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2])
    return [(s - centre) / size for s in strokes]
