"""Pictures for evaluation reports, drawn with Pillow: a confusion matrix and a contact sheet of errors."""
from __future__ import annotations

import functools
import io
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.files import atomic_write
from core.image_io import over_white
from core.labels import CLASS_NAMES, GLYPHS


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_png(img: Image.Image, path: str) -> None:
    """Written whole or not at all: an interrupted run leaves the earlier picture, not half of a new one."""
    atomic_write(path, png_bytes(img))


LABEL_FACES = ("MiriamCLM-Book", "SimpleCLM-Medium", "DavidCLM-Medium", "NachlieliCLM-Light")
TEXT_FACES = ("NachlieliCLM-Light", "DavidCLM-Medium")   # Culmus faces with Latin letters and "…" too (Miriam has none)
LATIN = "abcd"   # letters a face with Latin ones draws each its own way (a face without them: one box for all)


@functools.lru_cache(maxsize=None)   # finding the Hebrew face scans every font folder
def font(size: int, hebrew: bool = False, latin: bool = False):
    """Pillow's own font, or with ``hebrew`` one that draws the Hebrew letters: a Culmus face, else any font
    fontconfig knows for Hebrew (DejaVu Sans has them); without one, a warning (the letters would be boxes). With
    ``latin`` too, one that draws Latin text as well (a heading, in which a folder's name may be Hebrew): a Culmus
    face that has Latin letters, else fontconfig's font for Hebrew if it has them."""
    if hebrew:
        from pipeline.generate_letters import find_faces
        faces = {f.name: f for f in find_faces()}
        for name in TEXT_FACES if latin else LABEL_FACES:
            if name in faces:
                return ImageFont.truetype(faces[name].path, size)
        path = _fontconfig_hebrew_face(latin)
        if path:
            return ImageFont.truetype(path, size)
        print("plots: no font with Hebrew letters" + (" and Latin ones" if latin else "") + " was found (sudo apt-get "
              "install culmus): the letters are drawn as boxes; the class names beside them still say which is which",
              file=sys.stderr)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def heading_font():
    """The face of a picture's heading: one that draws Latin text and Hebrew (a data root's folder name)."""
    return font(14, hebrew=True, latin=True)


def draws_each(face, letters: str) -> bool:
    """Whether ``face`` draws each of ``letters`` its own way: a face that lacks them draws one box for all."""
    return len({bytes(face.getmask(letter)) for letter in letters}) == len(letters)


def _fontconfig_hebrew_face(latin: bool = False) -> str | None:
    """The file of fontconfig's best font for Hebrew, if it really has the letters (fc-match answers a font
    even when none covers the language), and with ``latin`` the Latin ones too."""
    try:
        found = subprocess.run(["fc-match", "--format=%{file}", ":lang=he"], capture_output=True, text=True,
                               timeout=10)
        path = found.stdout.strip()
        if found.returncode or not path:
            return None
        face = ImageFont.truetype(path, 24)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if draws_each(face, GLYPHS[:4]) and (not latin or draws_each(face, LATIN)) else None


def matrix_heading(title: str = "") -> str:
    """The confusion matrix's heading: the caller's title, and always which axis is which."""
    legend = "confusion matrix (rows: true, columns: predicted)"
    return f"{title}: {legend}" if title else legend


def heading_lines(draw: ImageDraw.ImageDraw, title: str, text_font, width: float) -> list[str]:
    """:func:`matrix_heading` as drawn in at most ``width`` pixels: one line when it fits, else the title (its
    middle cut, "…", when too long: a long data-root path) above the axis legend, which is never cut."""
    heading = matrix_heading(title)
    if not title or draw.textlength(heading, font=text_font) <= width:
        return [heading]
    return [fitted_middle(draw, title, text_font, width), matrix_heading()]


def fitted_middle(draw: ImageDraw.ImageDraw, text: str, text_font, width: float) -> str:
    """``text`` as drawn in at most ``width`` pixels: characters taken from its middle for "…" (so that both ends,
    a model's version and a score, stay)."""
    keep = len(text)
    shown = text
    while keep > 1 and draw.textlength(shown, font=text_font) > width:
        keep -= 1
        shown = text[:(keep + 1) // 2] + "…" + text[len(text) - keep // 2:]
    return shown


def confusion_matrix_png(matrix: np.ndarray, title: str = "") -> bytes:
    """Row = true class, column = predicted; cells shaded by the row-normalised share, counts written (PNG bytes)."""
    n = len(CLASS_NAMES)
    cell, left, top = 30, 130, 110
    img = Image.new("RGB", (left + n * cell + 20, top + n * cell + 40), "white")
    draw = ImageDraw.Draw(img)
    small, glyph_font = font(11), font(18, hebrew=True)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    for k, line in enumerate(heading_lines(draw, title, heading_font(), img.width - 20)):   # above the column letters
        draw.text((10, 8 + 20 * k), line, fill="black", font=heading_font())
    for i in range(n):
        y = top + i * cell
        draw.text((8, y + 8), CLASS_NAMES[i], fill="black", font=small)
        draw.text((left - 24, y + 4), GLYPHS[i], fill="black", font=glyph_font)
        x = left + i * cell
        draw.text((x + 8, top - 26), GLYPHS[i], fill="black", font=glyph_font)
        for j in range(n):
            x = left + j * cell
            v = share[i, j]
            if i == j:
                colour = (int(255 - 155 * v), int(255 - 55 * v), int(255 - 155 * v))  # green diagonal
            else:
                colour = (255, int(255 - 200 * v), int(255 - 200 * v))              # red errors
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(220, 220, 220))
            if matrix[i, j]:
                draw.text((x + 4, y + 9), str(int(matrix[i, j])), fill="black", font=small)
    return png_bytes(img)


def fitted(draw: ImageDraw.ImageDraw, text: str, text_font, width: float) -> str:
    """``text`` as drawn in at most ``width`` pixels: final forms' "_final" shortened to "_f", then cut with "…"."""
    if draw.textlength(text, font=text_font) <= width:
        return text
    text = text.replace("_final", "_f")
    while len(text) > 1 and draw.textlength(text, font=text_font) > width:
        text = text[:-2] + "…"
    return text


def contact_sheet_png(items: list[dict], columns: int = 8, thumb: int = 96) -> bytes:
    """The errors' thumbnails (PNG bytes); each item: {'image': bytes, 'true': idx, 'pred': idx, 'confidence': float,
    'source': str}."""
    rows = max(1, -(-len(items) // columns))
    label_h = 44
    img = Image.new("RGB", (columns * (thumb + 8) + 8, rows * (thumb + label_h + 8) + 30), "white")
    draw = ImageDraw.Draw(img)
    small, glyph_font = font(11), font(16, hebrew=True)
    draw.text((8, 6), f"{len(items)} most confident errors (true -> predicted, confidence)", fill="black",
              font=heading_font())
    for k, item in enumerate(items):
        r, c = divmod(k, columns)
        x, y = 8 + c * (thumb + 8), 30 + r * (thumb + label_h + 8)
        try:
            pic = over_white(Image.open(io.BytesIO(item["image"])))   # as the model reads it (grey)
            pic.thumbnail((thumb, thumb))
            img.paste(pic, (x + (thumb - pic.width) // 2, y + (thumb - pic.height) // 2))
        except Exception:  # the image was scored, so it decodes; be safe in a report anyway
            draw.text((x + 4, y + 40), "unreadable", fill="red", font=small)
        draw.rectangle([x - 1, y - 1, x + thumb, y + thumb], outline=(200, 200, 200))
        t, p = item["true"], item["pred"]
        # each letter drawn apart, true then predicted from left to right as the label under them (drawn as one
        # string, a right-to-left layout put the predicted letter first)
        draw.text((x, y + thumb + 2), GLYPHS[t], fill="black", font=glyph_font)
        draw.text((x + 16, y + thumb + 5), ">", fill="black", font=small)
        draw.text((x + 30, y + thumb + 2), GLYPHS[p], fill="black", font=glyph_font)
        draw.text((x + 50, y + thumb + 5), f"{item['confidence']:.0%}", fill="red", font=small)
        draw.text((x, y + thumb + 24), fitted(draw, f"{CLASS_NAMES[t]}->{CLASS_NAMES[p]}", small, thumb + 6),
                  fill="black", font=small)
    return png_bytes(img)


SERIES_COLOURS = ((67, 147, 195), (214, 96, 77), (77, 172, 38), (128, 100, 162))


def line_chart_png(path: str, series: dict[str, list[tuple[float, float]]], title: str, x_label: str,
                   y_label: str, marks: dict[str, float] | None = None, log_x: bool = True) -> None:
    """One line per series through its (x, y) points, each point's y written beside it; ``marks`` are
    labelled horizontal lines (a target, a baseline). x on a log scale unless ``log_x`` is False."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        raise ValueError("a line chart needs at least one point")
    if log_x and min(x for x, _ in points) <= 0:
        raise ValueError("a log x axis needs positive x values")
    marks = marks or {}
    ys = [y for _, y in points] + list(marks.values())
    low, high = min(ys), max(ys)
    pad = max(0.02, (high - low) * 0.08)
    low, high = (max(0.0, low - pad) if low >= 0 else low - pad), high + pad
    scale_x = np.log if log_x else (lambda v: v)
    xs = sorted({x for x, _ in points})
    x0, x1 = scale_x(xs[0]), scale_x(xs[-1])
    left, top, plot_w, plot_h = 60, 56, 560, 300
    img = Image.new("RGB", (left + plot_w + 170, top + plot_h + 60), "white")   # marks' labels on the right
    draw = ImageDraw.Draw(img)
    draw.text((10, 6), title, fill="black", font=font(14))

    def at(x: float, y: float) -> tuple[float, float]:
        fx = 0.5 if x1 == x0 else (scale_x(x) - x0) / (x1 - x0)
        return left + 10 + fx * (plot_w - 20), top + plot_h - (y - low) / (high - low) * plot_h

    grid = 0.05 if high - low > 0.25 else 0.02
    tick = np.ceil(low / grid) * grid
    while tick <= high:
        _, y = at(xs[0], tick)
        draw.line([left, y, left + plot_w, y], fill=(235, 235, 235))
        draw.text((8, y - 6), f"{tick + 0.0:.2f}", fill="black", font=font(10))   # + 0.0: no "-0.00"
        tick += grid
    for x in xs:
        px, _ = at(x, low)
        draw.line([px, top + plot_h, px, top + plot_h + 4], fill="black")
        draw.text((px - 8, top + plot_h + 6), f"{x:g}", fill="black", font=font(10))
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=(120, 120, 120))
    draw.text((left + plot_w // 2 - 80, top + plot_h + 24), x_label, fill="black", font=font(11))
    draw.text((8, top - 16), y_label, fill="black", font=font(11))
    for i, (name, value) in enumerate(sorted(marks.items(), key=lambda item: item[1])):
        _, y = at(xs[0], value)
        for x in range(left, left + plot_w, 8):
            draw.line([x, y, x + 4, y], fill=(90, 90, 90))
        draw.text((left + plot_w + 6, y - 1 if i % 2 == 0 else y - 12),   # a lower line's label below, the next's above
                  f"{name} ({value:.3f})", fill=(90, 90, 90), font=font(10))
    legend_x = left
    heights = {}   # x → the series' y there: a point's label goes above it if no other series is higher there
    for pts in series.values():
        for x, y in pts:
            heights.setdefault(x, []).append(y)
    for i, (name, pts) in enumerate(series.items()):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        pts = sorted(pts)
        if len(pts) > 1:
            draw.line([at(x, y) for x, y in pts], fill=colour, width=2)
        for x, y in pts:
            px, py = at(x, y)
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            above = y >= max(heights[x])
            draw.text((px + 4, py - 14 if above else py + 4), f"{y:.3f}", fill=colour, font=font(10))
        draw.rectangle([legend_x, 26, legend_x + 10, 36], fill=colour)
        draw.text((legend_x + 14, 24), name, fill="black", font=font(11))
        legend_x += 30 + int(draw.textlength(name, font=font(11)))
    save_png(img, path)
