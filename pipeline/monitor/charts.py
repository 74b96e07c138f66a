"""The report's pictures, drawn with Pillow like pipeline/plots.py (matplotlib is not part of the stack):
paired bars (served vs reference shares), histograms and accuracy intervals. Each PNG is written whole or not at
all (a full disk had left empty pictures)."""
from __future__ import annotations

import io

from PIL import Image, ImageDraw

from core.files import atomic_write
from pipeline.plots import font

SERVED, REFERENCE, LINE = (214, 96, 77), (67, 147, 195), (120, 120, 120)


def _frame(width: int, height: int, title: str):
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 6), title, fill="black", font=font(14))
    return img, draw


def _save(img: Image.Image, path: str) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def _legend(draw, x: int, y: int, names: tuple[str, str]) -> None:
    for colour, name in zip((SERVED, REFERENCE), names):
        if not name:
            continue
        draw.rectangle([x, y + 3, x + 10, y + 13], fill=colour)
        draw.text((x + 14, y), name, fill="black", font=font(11))
        x += 20 + int(draw.textlength(name, font=font(11)))


def paired_bars(path: str, labels: list[str], served: list[float], reference: list[float], title: str,
                names: tuple[str, str] = ("served", "reference")) -> None:
    """Two bars per label (shares 0..1), labels written under the axis."""
    n = max(1, len(labels))
    slot, left, top, plot_h = 30, 44, 50, 200
    img, draw = _frame(left + n * slot + 20, top + plot_h + 80, title)
    _legend(draw, left, 26, names)
    peak = max([*served, *reference, 1e-9])
    draw.line([left, top + plot_h, left + n * slot, top + plot_h], fill=LINE)
    draw.text((4, top - 6), f"{peak:.0%}", fill="black", font=font(10))
    draw.text((4, top + plot_h - 10), "0%", fill="black", font=font(10))
    for i, label in enumerate(labels):
        x = left + i * slot + 3
        for k, (colour, value) in enumerate(((SERVED, served[i]), (REFERENCE, reference[i]))):
            h = int(plot_h * value / peak)
            draw.rectangle([x + k * 12, top + plot_h - h, x + k * 12 + 10, top + plot_h], fill=colour)
        text = Image.new("RGBA", (70, 14), (255, 255, 255, 0))
        ImageDraw.Draw(text).text((0, 0), label[:11], fill="black", font=font(10))
        img.paste(text.rotate(60, expand=True), (x - 8, top + plot_h + 4), text.rotate(60, expand=True))
    _save(img, path)


def histogram(path: str, values: list[float], reference: list[float] | None, bins: int, low: float, high: float,
              title: str, mark: float | None = None) -> None:
    """Shares per bin of ``values`` (and ``reference``), an optional vertical mark (a threshold)."""
    def shares(data):
        counts = [0] * bins
        for v in data:
            counts[min(bins - 1, max(0, int((v - low) / (high - low) * bins)))] += 1
        return [c / max(1, len(data)) for c in counts]

    served, ref = shares(values), shares(reference or [])
    left, top, plot_w, plot_h = 44, 50, 480, 180
    img, draw = _frame(left + plot_w + 20, top + plot_h + 40, title)
    _legend(draw, left, 26, ("served", "training") if reference is not None else ("served", ""))
    peak = max([*served, *ref, 1e-9])
    width = plot_w / bins
    for i in range(bins):
        x = left + i * width
        for k, (colour, value) in enumerate(((SERVED, served[i]), (REFERENCE, ref[i]))):
            if reference is None and k == 1:
                continue
            h = int(plot_h * value / peak)
            draw.rectangle([x + 1 + k * width / 2, top + plot_h - h, x + (k + 1) * width / 2, top + plot_h],
                           fill=colour)
    draw.line([left, top + plot_h, left + plot_w, top + plot_h], fill=LINE)
    draw.text((left, top + plot_h + 4), f"{low:g}", fill="black", font=font(10))
    draw.text((left + plot_w - 30, top + plot_h + 4), f"{high:g}", fill="black", font=font(10))
    draw.text((4, top - 6), f"{peak:.0%}", fill="black", font=font(10))
    if mark is not None:
        x = left + (mark - low) / (high - low) * plot_w
        draw.line([x, top, x, top + plot_h], fill="black", width=2)
        draw.text((x + 3, top), f"{mark:g}", fill="black", font=font(10))
    _save(img, path)


def intervals(path: str, rows: list[tuple[str, float, float, float]], threshold: float, title: str) -> None:
    """One row per (name, estimate, low, high) on a 0..1 axis, with the threshold as a vertical line."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # names whole, however long: a cut "version 1796477035" would name another version
    left = max([120] + [16 + int(measure.textlength(name, font=font(11))) for name, *_ in rows])
    top, plot_w, row_h = 40, 400, 28
    img, draw = _frame(left + plot_w + 40, top + row_h * max(1, len(rows)) + 30, title)
    x_of = lambda v: left + v * plot_w   # noqa: E731
    for i, (name, estimate, low, high) in enumerate(rows):
        y = top + i * row_h + row_h // 2
        draw.text((8, y - 7), name, fill="black", font=font(11))
        draw.line([x_of(low), y, x_of(high), y], fill=REFERENCE, width=3)
        draw.ellipse([x_of(estimate) - 4, y - 4, x_of(estimate) + 4, y + 4], fill=SERVED)
    bottom = top + row_h * max(1, len(rows))
    draw.line([x_of(threshold), top - 4, x_of(threshold), bottom], fill="black", width=2)
    draw.text((x_of(threshold) + 3, bottom + 2), f"threshold {threshold:g}", fill="black", font=font(10))
    for v in (0, 0.5, 1):
        draw.text((x_of(v) - 6, bottom + 14), f"{v:g}", fill=LINE, font=font(10))
    _save(img, path)
