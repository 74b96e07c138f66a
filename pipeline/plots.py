"""Pictures for evaluation reports, drawn with Pillow: a confusion matrix and a contact sheet of errors."""
from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.labels import CLASS_NAMES, GLYPHS


LABEL_FACES = ("MiriamCLM-Book", "SimpleCLM-Medium", "DavidCLM-Medium", "NachlieliCLM-Light")


@functools.lru_cache(maxsize=None)   # finding the Hebrew face scans every font folder
def font(size: int, hebrew: bool = False):
    if hebrew:
        from pipeline.generate_letters import find_faces
        faces = {f.name: f for f in find_faces()}
        for name in LABEL_FACES:
            if name in faces:
                return ImageFont.truetype(faces[name].path, size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def confusion_matrix_png(matrix: np.ndarray, path: str, title: str = "") -> None:
    """Row = true class, column = predicted; cells shaded by the row-normalised share, counts written."""
    n = len(CLASS_NAMES)
    cell, left, top = 30, 130, 110
    img = Image.new("RGB", (left + n * cell + 20, top + n * cell + 40), "white")
    draw = ImageDraw.Draw(img)
    small, glyph_font = font(11), font(18, hebrew=True)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    draw.text((10, 8), title or "confusion matrix (rows: true, columns: predicted)", fill="black", font=font(14))
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
    img.save(path)


def contact_sheet_png(items: list[dict], path: str, columns: int = 8, thumb: int = 96) -> None:
    """Each item: {'image': bytes, 'true': idx, 'pred': idx, 'confidence': float, 'source': str}."""
    rows = max(1, -(-len(items) // columns))
    label_h = 44
    img = Image.new("RGB", (columns * (thumb + 8) + 8, rows * (thumb + label_h + 8) + 30), "white")
    draw = ImageDraw.Draw(img)
    small, glyph_font = font(11), font(16, hebrew=True)
    draw.text((8, 6), f"{len(items)} most confident errors (true -> predicted, confidence)", fill="black",
              font=font(14))
    for k, item in enumerate(items):
        r, c = divmod(k, columns)
        x, y = 8 + c * (thumb + 8), 30 + r * (thumb + label_h + 8)
        try:
            pic = Image.open(io.BytesIO(item["image"])).convert("RGB")
            pic.thumbnail((thumb, thumb))
            img.paste(pic, (x + (thumb - pic.width) // 2, y + (thumb - pic.height) // 2))
        except Exception:  # the image was scored, so it decodes; be safe in a report anyway
            draw.text((x + 4, y + 40), "unreadable", fill="red", font=small)
        draw.rectangle([x - 1, y - 1, x + thumb, y + thumb], outline=(200, 200, 200))
        t, p = item["true"], item["pred"]
        draw.text((x, y + thumb + 2), f"{GLYPHS[t]}  {GLYPHS[p]}", fill="black", font=glyph_font)
        draw.text((x + 50, y + thumb + 5), f"{item['confidence']:.0%}", fill="red", font=small)
        draw.text((x, y + thumb + 24), f"{CLASS_NAMES[t]}->{CLASS_NAMES[p]}"[:19], fill="black", font=small)
    img.save(path)
