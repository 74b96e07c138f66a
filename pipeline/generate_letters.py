"""Built-in default data: the 27 letters written by simulated writers, or rendered from the Hebrew fonts.

``--style strokes`` (the default) has ``--per-class`` writers each write all 27 letters (``pipeline.handwriting``:
the handwriting-like faces' strokes re-drawn with pen dynamics and each writer's style, then scanned);
``--style fonts`` renders the glyphs of all the Hebrew fonts with augmentation; ``--style mixed`` draws each
image one way or the other, half and half.

Writes ``OUT/<class_folder>/<class>_<font or "hand">_<n>.png`` (the layout ``--data-root`` expects). Deterministic: the
same fonts, seed and count give byte-identical files. A manifest (``OUT/generated.json``) records what was
made and its digest, so a second run with the same settings leaves the files (and their mtimes, which TFX fingerprints
for caching) untouched, unless an image is missing, changed or emptied: then it writes the data set again. A run
with other settings replaces the data set, and says so first (its settings and image count). It never
replaces files it did not write: a non-empty folder without the manifest is refused, and other files in the class
folders of one it wrote are kept (and named when the pipeline reads them), named as it names its images or not: it
replaces only those its manifest records, with their sha256.

    letters-generate --out data/generated --per-class 80 --seed 1234 [--style strokes]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage
from tqdm import tqdm

from core import configs, settings
from core.files import atomic_write, exclusive, printable, sync_filesystem, utf8
from core.labels import CLASS_NAMES, GLYPHS, in_class_folder
from pipeline import handwriting

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.local/share/fonts"))
FONT_PACKAGES = "culmus culmus-fancy fonts-ldco"

# Handwriting-like (cursive "ktav yad") faces come first and are drawn more often: real handwriting looks
# like them. Print and hand-lettered faces add variety. Names are font file stems.
PRINT_FACES = (
    "ElliniaCLM-LightItalic", "ElliniaCLM-Light", "Skechers", "Strokes", "Sayphan", "Mixer", "Amit",
    "ComixNo2CLM-Medium", "HillelCLM-Medium", "Noam", "Daniel", "HarSinai", "ShmulikCLM", "DavidCLM-Medium",
    "FrankRuehlCLM-Medium", "MiriamCLM-Book", "NachlieliCLM-Light", "SimpleCLM-Medium", "KeterYG-Medium",
)
SCRIPT_SHARE = 0.6
SCRIPT_FACE_PACKAGES = {   # the handwriting-like faces, each with its Debian package
    "KtavYadCLM-MediumItalic": "culmus-fancy", "KtavYadCLM-BoldItalic": "culmus-fancy", "AnkaCLM-Bold": "culmus-fancy",
    "DorianCLM-BookItalic": "culmus-fancy", "Lilach": "fonts-ldco", "YamSuf": "fonts-ldco",
}
SCRIPT_FACES = tuple(SCRIPT_FACE_PACKAGES)
# The faces whose strokes the simulated writers learn: all the script faces. Measured on real letters
# (docs/measurements.md): leaving YamSuf out lost 6 points, adding a print-like face (Neo, Ellinia's light italic)
# lost 5, and Lilach, whose thinned letters are partly broken, gained 1-2 points of top-1 and 2 of top-3 on two seeds.
STROKE_FACES = SCRIPT_FACES
GENERATOR_VERSION = 3   # in the manifest: data written by an earlier generator is written again
STYLES = ("strokes", "fonts", "mixed")
DEFAULT_STYLE = "strokes"
MIXED_STROKE_SHARE = 0.5
FONT_EXTENSIONS = (".ttf", ".otf", ".pfa", ".pfb")  # preference order when a face comes in several


MANIFEST = configs.GENERATED_MANIFEST
LOCK = ".generate.lock"   # in the output folder: held (flock) by the generation writing it, dropped when it ends
HAND = "hand"   # the source in the name of an image the simulated writers wrote (a font's name in one it rendered)
WRITER_STREAM = 1_000_003   # keeps the writers' random numbers apart from the letters' ([seed, class, i])


class NotGeneratedFolder(ValueError):
    """The output folder holds files this generator did not write; they are never replaced."""


class NoHebrewFontError(RuntimeError):
    pass


class Interrupted(KeyboardInterrupt):
    """:func:`generate` stopped by Ctrl-C (or SIGTERM as one); ``left`` says what it leaves in the folder: "waiting"
    (stopped waiting for another generation's lock: this run wrote nothing), "nothing" (it wrote nothing),
    "unfinished" (its manifest says so) or "complete" (the manifest says the data set is, and it is)."""

    def __init__(self, left: str):
        super().__init__(left)
        self.left = left


INTERRUPTED = {   # what letters-generate says for each Interrupted.left
    "waiting": "interrupted while waiting for another generation in {out} to finish: this run wrote nothing there "
               "(the other one goes on)",
    "nothing": "interrupted before writing anything: {out} is as it was",
    "unfinished": f"interrupted; {{out}} is unfinished ({MANIFEST} says so, and the pipeline and letters-evaluate "
                  "refuse it): run the same command again to finish it",
    "complete": f"interrupted once {{out}} was complete: its data set is all there ({MANIFEST} says so)",
}


@dataclass(frozen=True)
class Face:
    name: str
    path: str
    script: bool


def find_faces(font_dirs=None) -> list[Face]:
    """The known Hebrew faces installed on this machine, script faces first."""
    by_stem: dict[str, str] = {}
    for root in font_dirs if font_dirs is not None else FONT_DIRS:
        if not os.path.isdir(root):
            continue
        for dirpath, _, files in os.walk(root):
            for name in files:
                stem, ext = os.path.splitext(name)
                if ext.lower() not in FONT_EXTENSIONS:
                    continue
                old = by_stem.get(stem)
                if old is None or FONT_EXTENSIONS.index(ext.lower()) < FONT_EXTENSIONS.index(
                        os.path.splitext(old)[1].lower()):
                    by_stem[stem] = os.path.join(dirpath, name)
    faces = [Face(s, by_stem[s], True) for s in SCRIPT_FACES if s in by_stem]
    faces += [Face(s, by_stem[s], False) for s in PRINT_FACES if s in by_stem]
    return [f for f in faces if _has_hebrew(f.path)]


def _has_hebrew(path: str) -> bool:
    """A face that lacks Hebrew draws the same placeholder box for every letter."""
    try:
        font = ImageFont.truetype(path, 32)
    except OSError:
        return False
    masks = {bytes(font.getmask(g)) for g in GLYPHS[:6]}
    return len(masks) == 6


def require_faces(font_dirs=None, style: str = DEFAULT_STYLE) -> list[Face]:
    """The Hebrew faces installed (:func:`find_faces`); :class:`NoHebrewFontError` when there is none, or, for a
    ``style`` with simulated writers, no handwriting-like one to take strokes from."""
    faces = find_faces(font_dirs)
    if not faces:
        raise NoHebrewFontError(
            "no Hebrew font found. Install Debian's Hebrew fonts: "
            f"sudo apt-get install {FONT_PACKAGES}  (or run `make fonts` as root)")
    if style != "fonts":
        _hands(faces)
    return faces


def missing_script_faces(faces: list[Face]) -> str | None:
    """What a warning says when handwriting-like faces are not among ``faces`` (their package not installed): each
    one with its Debian package, as the data is then made from fewer of them; None when all are there."""
    found = {f.name for f in faces}
    missing = [name for name in SCRIPT_FACES if name not in found]
    if not missing:
        return None
    packages = sorted({SCRIPT_FACE_PACKAGES[name] for name in missing})
    return (f"{len(missing)} of the {len(SCRIPT_FACES)} handwriting-like fonts not installed: "
            + ", ".join(f"{name} ({SCRIPT_FACE_PACKAGES[name]})" for name in missing)
            + f"; the data is generated without them. Install them: sudo apt-get install {' '.join(packages)}")


def render_letter(glyph: str, face: Face, rng: np.random.Generator) -> Image.Image:
    """One augmented, tightly cropped grayscale image of ``glyph`` (dark ink on paper)."""
    size = int(rng.integers(48, 96))
    font = ImageFont.truetype(face.path, size)
    canvas = int(size * 2.2)
    img = Image.new("L", (canvas, canvas), 0)  # ink = 255 on 0 while we transform
    draw = ImageDraw.Draw(img)
    draw.text((canvas / 2, canvas / 2), glyph, font=font, fill=255, anchor="mm")

    # Stroke thickness: thicken or thin the ink a little.
    r = rng.random()
    if r < 0.3:
        img = img.filter(ImageFilter.MaxFilter(3))
    elif r < 0.45 and size > 60:
        img = img.filter(ImageFilter.MinFilter(3))

    # Affine: rotation, shear, anisotropic scale.
    angle = rng.normal(0, 6)
    shear = rng.normal(0, 0.12)
    sx, sy = np.exp(rng.normal(0, 0.1, size=2))
    c = canvas / 2
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    m = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]]) @ np.diag([sx, sy])
    inv = np.linalg.inv(m)
    offset = np.array([c, c]) - inv @ np.array([c, c])
    img = img.transform(img.size, Image.AFFINE, (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1],
                                                  offset[1]), resample=Image.BILINEAR)

    # Elastic jitter: a smooth random displacement field.
    arr = np.asarray(img, dtype=np.float32)
    alpha, sigma = rng.uniform(1.5, 4.0) * size / 64, rng.uniform(5, 9) * size / 64
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, arr.shape), sigma) * alpha * sigma
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, arr.shape), sigma) * alpha * sigma
    yy, xx = np.meshgrid(np.arange(arr.shape[0]), np.arange(arr.shape[1]), indexing="ij")
    arr = ndimage.map_coordinates(arr, [yy + dy, xx + dx], order=1, mode="constant")

    # Tight crop around the ink with a small random margin (translation).
    ys, xs = np.nonzero(arr > 40)
    if len(ys) == 0:  # a degenerate draw; fall back to the whole canvas
        ys, xs = np.array([0, canvas - 1]), np.array([0, canvas - 1])
    margin = rng.integers(1, max(2, size // 8), size=4)
    top, bottom = max(0, ys.min() - margin[0]), min(canvas, ys.max() + 1 + margin[1])
    left, right = max(0, xs.min() - margin[2]), min(canvas, xs.max() + 1 + margin[3])
    ink = arr[top:bottom, left:right] / 255.0

    # Paper tone, ink tone, noise, blur.
    paper = rng.uniform(185, 250)
    ink_tone = rng.uniform(0, 90)
    out = paper + (ink_tone - paper) * ink
    out += rng.normal(0, rng.uniform(0, 10), out.shape)
    result = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "L")
    if rng.random() < 0.4:
        result = result.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return result


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def generated_or_new(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is this generator's to write: missing, empty (but for a generation's lock file), or
    written by it before (its manifest)."""
    out = Path(folder)
    return not out.exists() or (out.is_dir() and ((out / MANIFEST).exists()
                                                  or not any(p.name != LOCK for p in out.iterdir())))


def check_out_folder(out_dir: str | os.PathLike) -> None:
    """ValueError for a folder :func:`generate` cannot write to: a URL (gs://…; it writes local files, and a URL
    taken for a path is a relative ``gs:/…`` folder where it ran)."""
    refusal = settings.url_refusal(os.fspath(out_dir))
    if refusal:
        raise ValueError(refusal)


def os_error(err: OSError) -> str:
    """An OSError of :func:`generate` in one line, as its path and the system's words ("data/generated: Read-only
    file system"), its path printable."""
    if err.filename and err.strerror:
        return f"{printable(os.fspath(err.filename))}: {err.strerror}"
    return str(err)


def generate(out_dir: str | os.PathLike, per_class: int, seed: int, faces: list[Face] | None = None,
             classes=CLASS_NAMES, progress=True, style: str = DEFAULT_STYLE) -> dict:
    """Writes ``per_class`` images for each class; returns the manifest. Re-uses an identical earlier run.

    ``style`` is one of :data:`STYLES`: with "strokes", image ``i`` of every class is written by writer ``i``.

    Only replaces what it wrote itself: a non-empty ``out_dir`` without ``generated.json`` is refused
    (:class:`NotGeneratedFolder`), and in a folder it made, only files named as it names them are deleted.
    """
    check_out_folder(out_dir)
    out = Path(out_dir)
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if out.exists() and not out.is_dir():
        raise NotGeneratedFolder(f"{out} is a file, not a folder")
    if not generated_or_new(out):
        raise NotGeneratedFolder(f"{out} is not empty and was not written by this generator (no {MANIFEST}): "
                                 "refusing to replace what is there; choose a new or empty folder")
    faces = faces if faces is not None else require_faces(style="fonts")   # (their hands are taken next)
    # The faces the simulated writers take strokes from, before the folder is made: none there is an error that
    # leaves nothing behind
    hands = _hands(faces) if style != "fonts" else None
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "per_class": per_class, "seed": seed, "classes": list(classes), "style": style,
        "faces": faces_used(style, [f.name for f in faces]), "version": GENERATOR_VERSION,
    }
    try:
        held = _alone(out)
    except OSError:   # no lock file can be made: a folder nobody writes (read-only), so no other generation either
        found = _earlier(out, manifest, classes)   # its data set, checked, is used as it is; any other is not written
        if found[1]:
            raise
        return _reused(out, found[0], classes, progress)
    with held:
        try:
            return _generate(out, manifest, faces, hands, classes, progress)
        except KeyboardInterrupt as err:
            raise Interrupted(_left(out, manifest)) from err


def _left(out: Path, manifest: dict) -> str:
    """What an interrupted :func:`_generate` writing ``manifest`` left in ``out`` (:class:`Interrupted`): read from
    the manifest there, this run's whole one (sha256 and all) once it was written."""
    try:
        found = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        found = None
    if found == manifest:
        return "complete"
    return "unfinished" if isinstance(found, dict) and found.get("incomplete") else "nothing"


def _alone(out: Path):
    """Holds ``out``'s lock file for one generation: a second one in the folder waits for the first to end (and
    then finds its data set there, or replaces it whole), where both had written and one's manifest had described
    a mix of their images. An interrupt while it waits is :class:`Interrupted` ("waiting")."""
    waited = []

    def waiting(held):
        waited.append(held)
        print(f"generate: waiting for another generation in {out} ({held.who}) to finish", flush=True)
    held = contextlib.ExitStack()
    try:
        held.enter_context(exclusive(str(out / LOCK), waiting=waiting))
    except KeyboardInterrupt as err:
        raise Interrupted("waiting" if waited else "nothing") from err
    return held


def _generate(out: Path, manifest: dict, faces: list[Face], hands: list[Face] | None, classes,
              progress: bool) -> dict:
    """:func:`generate`'s work, with the arguments checked (in ``manifest``, completed here once the data set is
    written) and the folder's lock held; ``hands``: the faces the simulated writers take strokes from (None for the
    fonts style)."""
    manifest_path = out / MANIFEST
    per_class, seed, style = manifest["per_class"], manifest["seed"], manifest["style"]
    script = [f for f in faces if f.script] or faces
    others = [f for f in faces if not f.script] or faces
    writer = _writers(seed, hands)
    ours = set()   # the sources (fonts, "hand") named in the files of the data set in ``out``, if one is there
    theirs = {}    # the files of that data set its manifest vouches for, with their sha256: this run replaces them
    if manifest_path.exists():
        old, problem = _earlier(out, manifest, classes)
        if not problem:
            return _reused(out, old, classes, progress)
        ours, theirs = _sources(old), _theirs(out, classes, old)
        if progress and problem != _OTHER:
            print(f"generate: {out} no longer holds the data set {MANIFEST} describes ({problem}): writing it "
                  "again", flush=True)
        elif progress and not _same(old, manifest):
            print(f"generate: replacing the {_described(old, out)}: {len(theirs):,} images) with "
                  f"{_settings(manifest, old)}", flush=True)
    # Marks the folder as ours (and unfinished) before anything in it changes: its files are those of the data set
    # it replaces (recorded) and those this one writes (named by its settings), until the old ones are gone.
    sources = _sources(manifest)
    ours |= sources
    atomic_write(str(manifest_path), json.dumps(
        {**manifest, "sources": sorted(ours), "incomplete": True,
         "files": {f"{p.parent.name}/{p.name}": sha for p, sha in sorted(theirs.items())}}, indent=2).encode())
    files = {}   # the files this run writes: name in the folder -> sha256

    digest = hashlib.sha256()
    total = len(classes) * per_class
    bar = tqdm(total=total, desc="generate", unit="img", disable=not progress, file=sys.stderr)
    try:
        for name in classes:
            glyph = GLYPHS[CLASS_NAMES.index(name)]
            class_dir = out / name
            class_dir.mkdir(parents=True, exist_ok=True)
            for old_file in [p for p in theirs if p.parent == class_dir]:
                old_file.unlink()
            for i in range(per_class):
                rng = np.random.default_rng([seed, CLASS_NAMES.index(name), i])
                if writer and (style == "strokes" or rng.random() < MIXED_STROKE_SHARE):
                    img, source = handwriting.write_letter(glyph, writer(i), rng), HAND
                else:
                    pool = script if rng.random() < SCRIPT_SHARE else others
                    face = pool[int(rng.integers(len(pool)))]
                    img, source = render_letter(glyph, face, rng), face.name
                data = _png_bytes(img)
                digest.update(data)
                file_name = f"{name}_{source}_{i:04d}.png"
                (class_dir / file_name).write_bytes(data)
                files[f"{name}/{file_name}"] = hashlib.sha256(data).hexdigest()
                bar.update()
    finally:
        bar.close()            # (interrupted too: the bar's line ends before the message that follows)
    sync_filesystem(str(out))   # the images are on disk before the manifest says they are all there
    manifest["sha256"] = digest.hexdigest()
    manifest["images"] = total
    manifest["sources"] = sorted(sources)
    manifest["files"] = files
    atomic_write(str(manifest_path), json.dumps(manifest, indent=2).encode())
    if progress:
        _note_others(out, classes, {out / name for name in files})
    return manifest


_OTHER = "another data set"   # :func:`_earlier`'s problem when the folder's manifest is not of the one asked for


def _earlier(out: Path, manifest: dict, classes) -> tuple:
    """The manifest in ``out`` (None when there is none or it cannot be read), its fonts as ``manifest``'s style
    reads them, and why ``out`` does not hold the complete data set ``manifest`` describes: :data:`_OTHER` when the
    manifest is of another one (or unfinished, or missing), what is wrong with its images (:func:`_dataset_problem`),
    or None when it holds it."""
    try:
        old = json.loads((out / MANIFEST).read_text())
    except FileNotFoundError:
        return None, _OTHER
    except ValueError:
        old = None
    if isinstance(old, dict):   # its fonts as this style reads them (a manifest listed every one installed)
        old = {**old, "faces": faces_used(manifest["style"], old.get("faces"))}
    if not _same(old, manifest) or old.get("incomplete"):
        return old, _OTHER
    return old, _dataset_problem(out, classes, old)


def _same(old, manifest: dict) -> bool:
    """Whether the manifest ``old`` has ``manifest``'s settings."""
    return isinstance(old, dict) and {k: old.get(k) for k in manifest} == manifest


def _reused(out: Path, old: dict, classes, progress: bool) -> dict:
    """Leaves the data set ``out`` holds (its manifest ``old``) as it is, saying so; returns ``old``."""
    if progress:
        print(f"generate: {out} already holds this data set ({old['per_class']} per class, seed {old['seed']})")
        # Its files, as :func:`_theirs` finds them, without reading them again: checked, each recorded one is there
        # with its sha256 (or, for a manifest written before they were recorded, its images numbered from 0 are)
        recorded, sources = _recorded(old), _sources(old)
        _note_others(out, classes, {path for name in classes if (out / name).is_dir()
                                    for path in _generated_files(out, name, sources)
                                    if (f"{name}/{path.name}" in recorded if recorded is not None
                                        else _number(path) < old["per_class"])})
    return old


def _settings(manifest: dict, other: dict | None = None) -> str:
    """A manifest's settings as letters-generate is given them ("2 per class, seed 1234, strokes"), and what else
    tells it from ``other`` when those are the same (its generator, fonts or classes)."""
    said = ", ".join(text for key, text in (("per_class", "{} per class"), ("seed", "seed {}"), ("style", "{}"))
                     if manifest.get(key) is not None for text in [text.format(manifest[key])])
    if isinstance(other, dict) and all(other.get(k) == manifest.get(k) for k in ("per_class", "seed", "style")):
        differs = [text for key, text in (("version", f"generator version {manifest.get('version')}"),
                                          ("faces", "other fonts"), ("classes", "other classes"))
                   if other.get(key) != manifest.get(key)]
        said = ", ".join([said, *differs]) if said else ", ".join(differs)
    return said or "unknown settings"


def _described(old, out: Path) -> str:
    """The data set in ``out`` that an earlier run's manifest ``old`` (None when it cannot be read) describes, for
    the line that says it is being replaced: "data set in OUT (SETTINGS", its image count to follow."""
    if not isinstance(old, dict):
        return f"data set in {out} ({MANIFEST} unreadable"
    return f"{'unfinished ' if old.get('incomplete') else ''}data set in {out} ({_settings(old)}"


def faces_used(style: str, names):
    """Which of the faces ``names`` (installed, in find_faces' order) images of ``style`` are made from, as the
    manifest records them: for strokes the stroke faces (:data:`STROKE_FACES`; the script ones when none is
    there), for fonts and mixed all of them. Anything else (an old manifest's unreadable record) is returned as it
    is, so that it is told from every list."""
    if not isinstance(names, list) or style != "strokes":
        return names
    return _stroke_faces(names)


def _stroke_faces(names: list[str]) -> list[str]:
    """The faces of ``names`` whose strokes the simulated writers learn."""
    return [n for n in names if n in STROKE_FACES] or [n for n in names if n in SCRIPT_FACES]


def _writers(seed: int, hands: list[Face] | None):
    """The simulated writers, taking strokes from ``hands``: writer ``i`` (of image ``i`` of every class) as a
    function of ``i``, made when an image needs it (not all before the first image: a huge --per-class starts at
    once, in bounded memory); None for the fonts style (no ``hands``)."""
    if hands is None:
        return None
    return lambda i: handwriting.sample_writer(np.random.default_rng([seed, WRITER_STREAM, i]), hands)


def _hands(faces: list[Face]) -> list[Face]:
    """The faces of ``faces`` the simulated writers take strokes from; :class:`NoHebrewFontError` when none is."""
    stroke = set(_stroke_faces([f.name for f in faces]))
    hands = [f for f in faces if f.name in stroke]
    if not hands:
        raise NoHebrewFontError(f"no handwriting-like font ({', '.join(STROKE_FACES)}) to take strokes from. "
                                f"Install Debian's Hebrew fonts: sudo apt-get install {FONT_PACKAGES}")
    return hands


def _sources(manifest) -> set[str]:
    """What the names of the files of the data set a manifest describes name as their source: the fonts it drew
    from and "hand" (the simulated writers), as its "sources" records them; for a manifest written before it did,
    those of its style and fonts, or, when it says neither, every source this generator knows."""
    if not isinstance(manifest, dict):
        return {HAND, *SCRIPT_FACES, *PRINT_FACES}
    recorded = manifest.get("sources")
    if isinstance(recorded, list) and all(isinstance(s, str) for s in recorded):
        return set(recorded)
    style, faces = manifest.get("style"), manifest.get("faces")
    if style not in STYLES or not isinstance(faces, list):
        return {HAND, *SCRIPT_FACES, *PRINT_FACES}
    return ({HAND} if style != "fonts" else set()) | ({f for f in faces if isinstance(f, str)}
                                                      if style != "strokes" else set())


def _generated_files(out: Path, name: str, sources) -> list[Path]:
    """The files of class ``name`` named exactly as :func:`generate` names them, from one of ``sources``
    (``<class>_<source>_<NNNN>.png``, five digits and more from image 10000 on): a user's ``alef_scan_2024.png`` is
    not one of them."""
    if not sources:
        return []
    pattern = re.compile(rf"{re.escape(name)}_(?:{'|'.join(re.escape(s) for s in sorted(sources))})_"
                         r"(?:\d{4}|[1-9]\d{4,})\.png")
    return [p for p in (out / name).glob("*.png") if pattern.fullmatch(p.name)]


def _number(path: Path) -> int:
    """The image number ``n`` of a file :func:`_generated_files` finds (``<class>_<font>_<n>.png``)."""
    return int(path.stem.rsplit("_", 1)[1])


def _recorded(manifest) -> dict | None:
    """The files a manifest records (name in the folder, ``alef/alef_hand_0000.png`` -> sha256), or None for one
    written before it did."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return files
    return None


def _theirs(out: Path, classes, manifest) -> dict[Path, str]:
    """The files of the class folders of ``out`` that ``manifest`` (the one there) vouches for as this generator's,
    with their sha256: named as it names them (:func:`_generated_files`) and recorded there with their bytes; for an
    unfinished generation, also those it writes, numbered below its ``per_class``; for a manifest written before
    files were recorded, those of the data set it describes (numbered below its ``per_class``), or, unreadable or
    unfinished, every one. A file named so that it does not vouch for (a user's copy of another data set's
    ``alef_hand_0003.png``) is not among them: it is kept, and named with the other files not written by it."""
    recorded, sources = _recorded(manifest), _sources(manifest)
    per_class = manifest.get("per_class") if isinstance(manifest, dict) else None
    if not isinstance(per_class, int) or isinstance(per_class, bool):
        per_class = None
    incomplete = isinstance(manifest, dict) and bool(manifest.get("incomplete"))
    if recorded is not None and not incomplete:
        below = 0            # the recorded files alone
    elif recorded is None and (incomplete or not isinstance(manifest, dict)):
        below = None         # every one
    else:
        below = per_class    # (every one when it says no number)
    theirs = {}
    for name in classes:
        if not (out / name).is_dir():
            continue
        for path in _generated_files(out, name, sources):
            try:
                sha = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                sha = ""
            if ((recorded or {}).get(f"{name}/{path.name}") == sha and sha) or below is None \
                    or _number(path) < below:
                theirs[path] = sha
    return theirs


def _dataset_problem(out: Path, classes, manifest: dict) -> str | None:
    """Why ``out`` does not hold the data set ``manifest`` records (``per_class`` images of each class, each with
    the sha256 it records; for a manifest written before it recorded them, numbered from 0, their bytes in that
    order hashed to its ``sha256``), or None when it does: an image missing, or one changed (emptied, replaced).
    Other files named as it names them are not its own (:func:`_theirs`), and no problem."""
    per_class, recorded = manifest.get("per_class"), _recorded(manifest)
    digest, changed = hashlib.sha256(), False
    for name in classes:
        if recorded is not None:
            names = [rel for rel in recorded if rel.split("/", 1)[0] == name]
            files = [out / rel for rel in names if (out / rel).is_file()]
            whole = len(files) == len(names) == per_class
        else:
            files = sorted((p for p in _generated_files(out, name, _sources(manifest)) if _number(p) < per_class),
                           key=_number)
            whole = [_number(p) for p in files] == list(range(per_class))
        if not whole:
            return (f"{name} holds {len(files)} images named as it names them, not the {per_class} it wrote, numbered "
                    f"from 0")
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as err:
                return f"{name}/{printable(path.name)} cannot be read: {err.strerror or err}"
            digest.update(data)
            changed |= recorded is not None and hashlib.sha256(data).hexdigest() != recorded[f"{name}/{path.name}"]
    if changed or digest.hexdigest() != manifest.get("sha256"):
        return "the images' sha256 is not the one recorded: one was changed, emptied or replaced since it was written"
    return None


def _others(out: Path, classes, ours) -> list[str]:
    """The files in the class folders that are not images of the data set (``ours``, its files) and that the
    pipeline reads with them, as the ExampleGen tells them (:func:`core.labels.in_class_folder`, a UTF-8 name, not a
    folder): a hidden ``.DS_Store`` or a folder inside a class folder it does not read."""
    return sorted(f"{name}/{p.name}" for name in classes if (out / name).is_dir()
                  for p in (out / name).iterdir()
                  if p not in ours and in_class_folder(str(p)) and utf8(p.name) and not p.is_dir())


def _note_others(out: Path, classes, ours) -> None:
    """Says which files of the class folders this generator did not write (it never removes them); ``ours``: the
    data set's files."""
    others = _others(out, classes, ours)
    if others:
        shown = ", ".join(printable(name) for name in others[:5]) + (", …" if len(others) > 5 else "")
        print(f"generate: note: {len(others)} file(s) in the class folders of {out} were not written by this "
              f"generator and are read with its images (trained on when they are images): {shown}")


def main(argv=None) -> int:
    configs.warn_unknown_variables()
    from pipeline import flags
    config = flags.defaults_from_env()
    parser = argparse.ArgumentParser(
        prog="letters-generate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.rsplit("\n\n", 1)[0].replace("``", "'"),   # all but the usage line
        epilog="Defaults come from LETTERS_DATA_ROOT, LETTERS_GENERATE_PER_CLASS and LETTERS_GENERATE_SEED when set.")
    parser.add_argument("--out", default=config.data_root, help="output folder (default: %(default)s)")
    parser.add_argument("--per-class", type=int, default=config.generate_per_class,
                        help="images per class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=config.generate_seed, help="(default: %(default)s)")
    parser.add_argument("--style", choices=STYLES, default=DEFAULT_STYLE,
                        help="strokes: simulated writers (one per image of a class); fonts: augmented font glyphs; "
                             "mixed: half each (default: %(default)s)")
    args = parser.parse_args(argv)
    args.out = flags.path_or_default(args.out, config.data_root)
    try:
        check_out_folder(args.out)
    except ValueError as err:
        given = "out" in settings.given_flags(parser, argv, {"out"})
        parser.error(f"{'--out' if given else configs.ENV['data_root'] + ' (the default --out)'} {err}")
    if args.per_class < 1:
        parser.error("--per-class must be at least 1")
    if args.seed < 0:
        parser.error("--seed must not be negative")
    try:
        faces = require_faces(style=args.style)
    except NoHebrewFontError as err:
        print(f"generate: {err}", file=sys.stderr)
        return 2
    print(f"generate: {len(faces)} fonts ({sum(f.script for f in faces)} handwriting-like): "
          + ", ".join(f.name for f in faces))
    missing = missing_script_faces(faces)
    if missing:
        print(f"generate: warning: {missing}", file=sys.stderr, flush=True)
    from core.signals import sigterm_as_interrupt
    try:
        with sigterm_as_interrupt():
            generate(args.out, args.per_class, args.seed, faces, style=args.style)
    except KeyboardInterrupt as err:   # one before the folder's lock is taken is no Interrupted: nothing written
        print(f"\ngenerate: {INTERRUPTED[getattr(err, 'left', 'nothing')].format(out=args.out)}", file=sys.stderr)
        return 130
    except (NotGeneratedFolder, NoHebrewFontError) as err:
        print(f"generate: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"generate: error: {os_error(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
