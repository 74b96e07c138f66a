"""A contact sheet of generated letters: one row per writer, one column per class (in the canonical order).

    python -m bench.contact_sheet --out docs/generated_letters.png --writers 6
    python -m bench.contact_sheet --out /tmp/generated_vs_real.png --real-root /path/to/hhd_train   # local only

``--real-root`` adds as many rows of real letters below (the first readable images of each class folder), to
compare by eye. A sheet with real letters shows the real data set's images: keep it local, never commit it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from PIL import Image, ImageDraw

from core.image_io import ImageRejected, over_white, read_checked
from pipeline import generate_letters
from pipeline.flags import folder_problem
from core.labels import CLASS_NAMES

GAP = 8   # pixels between the generated and the real rows


def tile(rows: list[list[Path]], cell: int) -> Image.Image:
    """Images (rows of paths) shrunk into ``cell``-pixel squares on white, keeping their aspect ratio, each shown as
    the pipeline reads it (core.image_io.over_white: transparency over white, 16 bits by the high byte)."""
    sheet = Image.new("L", (cell * len(CLASS_NAMES), cell * len(rows)), 255)
    for r, row in enumerate(rows):
        for c, path in enumerate(row):
            with Image.open(path) as opened:
                img = over_white(opened)
            img.thumbnail((cell - 2, cell - 2))
            sheet.paste(img, (c * cell + (cell - img.width) // 2, r * cell + (cell - img.height) // 2))
    return sheet


def real_images(folder: Path, count: int) -> list[Path]:
    """The first ``count`` files of ``folder`` (by name) that are images the pipeline would read
    (core.image_io.read_checked: every pixel decoded); hidden files, damaged images and others are passed over."""
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            read_checked(str(path))
        except (ImageRejected, OSError):
            continue
        found.append(path)
        if len(found) == count:
            break
    return found


def png_file(path: str) -> str:
    """argparse type: a .png file that can be written (checked before any letter is drawn)."""
    if not path.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"{path} does not end in .png: the sheet is a PNG image")
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name")
    problem = folder_problem(os.path.dirname(os.path.abspath(path)))   # a new folder is made for it
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=png_file, help="PNG file to write")
    parser.add_argument("--writers", type=int, default=6, help="rows of generated letters (default: %(default)s)")
    parser.add_argument("--style", choices=generate_letters.STYLES, default=generate_letters.DEFAULT_STYLE)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--cell", type=int, default=48, help="pixels per letter (default: %(default)s)")
    parser.add_argument("--real-root", default=None, help="also this many rows of real letters (keep that sheet local)")
    args = parser.parse_args(argv)
    if args.writers < 1 or args.cell < 8 or args.seed < 0:
        parser.error("--writers must be at least 1, --cell at least 8, --seed not negative")
    real = None
    if args.real_root:   # checked before any letter is drawn
        missing = [name for name in CLASS_NAMES if not (Path(args.real_root) / name).is_dir()]
        if missing:
            parser.error(f"--real-root {args.real_root} has no class folder {', '.join(missing[:5])}"
                         + (", …" if len(missing) > 5 else ""))
        real = [real_images(Path(args.real_root) / name, args.writers) for name in CLASS_NAMES]
        if any(len(files) < args.writers for files in real):
            parser.error(f"--real-root needs at least {args.writers} image{'s' if args.writers > 1 else ''} in "
                         "every class folder")
    with tempfile.TemporaryDirectory() as tmp:
        generate_letters.generate(tmp, args.writers, args.seed, progress=False, style=args.style)
        # writer i's letter of each class: the file numbered i (the names' middle part is the face or "hand")
        rows = [[next((Path(tmp) / name).glob(f"{name}_*_{i:04d}.png")) for name in CLASS_NAMES]
                for i in range(args.writers)]
        sheet = tile(rows, args.cell)
    if real:
        below = tile([[files[i] for files in real] for i in range(args.writers)], args.cell)
        both = Image.new("L", (sheet.width, sheet.height + GAP + below.height), 255)
        both.paste(sheet, (0, 0))
        both.paste(below, (0, sheet.height + GAP))
        ImageDraw.Draw(both).line((0, sheet.height + GAP // 2, both.width, sheet.height + GAP // 2), fill=0)
        sheet = both
        print("the sheet shows real letters: keep it local, never commit it")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
