"""The 27 classes, in the canonical HHD order (index = label). Never derive this by sorting folders."""

import difflib
import os
import re
import unicodedata
from typing import Iterable

from core.files import is_hidden, printable

CLASS_NAMES = (
    "alef", "bet", "gimel", "dalet", "he", "vav", "zayin", "het", "tet", "yod",
    "kaf", "kaf_final", "lamed", "mem", "mem_final", "nun", "nun_final", "samekh", "ayin", "pe",
    "pe_final", "tsadi", "tsadi_final", "qof", "resh", "shin", "tav",
)

GLYPHS = (
    "א", "ב", "ג", "ד", "ה", "ו", "ז", "ח", "ט", "י",
    "כ", "ך", "ל", "מ", "ם", "נ", "ן", "ס", "ע", "פ",
    "ף", "צ", "ץ", "ק", "ר", "ש", "ת",
)

NUM_CLASSES = len(CLASS_NAMES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}
GLYPH_OF = dict(zip(CLASS_NAMES, GLYPHS))
CLASS_OF_GLYPH = dict(zip(GLYPHS, CLASS_NAMES))

assert NUM_CLASSES == 27 and len(GLYPHS) == 27 and len(set(CLASS_NAMES)) == 27


def label_index(name, what: str = "class") -> int:
    """Index of a class folder name; a clear error (quoting at most 40 characters of it, called ``what``) for
    anything else."""
    index = CLASS_INDEX.get(name) if isinstance(name, str) else None
    if index is None:
        shown = name[:40] if isinstance(name, str) else name
        raise ValueError(f"unknown {what} {shown!r:.60}; expected one of the {NUM_CLASSES} classes: "
                         f"{', '.join(CLASS_NAMES)}")
    return index


_SEPARATORS = r"[\s._-]+"   # what separates the words of a folder name: spaces, dots, hyphens, underscores (a run)

# Usual spellings of letters that difflib reads as another letter or as none (kuf as kaf, vet as tet, sav as vav;
# koph, fe, waw): looked up before it, each also with _sofit or _final for a letter that has a final form.
TRANSLITERATIONS = {
    "kuf": "qof", "kof": "qof", "koph": "qof", "qoph": "qof", "quf": "qof",
    "vet": "bet", "beth": "bet", "veth": "bet",
    "fe": "pe", "fey": "pe", "feh": "pe", "pey": "pe", "peh": "pe",
    "chaf": "kaf", "khaf": "kaf", "kaph": "kaf",
    "waw": "vav", "sav": "tav",
}
_FINAL_ENDINGS = ("_sofit", "_final")


def transliterated(spelled: str) -> str | None:
    """The class a lower-case, ``_``-separated folder name spells in :data:`TRANSLITERATIONS` (``koph``: qof), or
    as a final form, its letter so spelled or a class name, then ``_sofit`` or ``_final`` (``fe_sofit``,
    ``mem_sofit``: pe_final, mem_final); None for another name."""
    for ending in _FINAL_ENDINGS:
        if spelled.endswith(ending):
            base = spelled[:-len(ending)]
            final = f"{TRANSLITERATIONS.get(base, base)}_final"
            return final if final in CLASS_INDEX else None
    return TRANSLITERATIONS.get(spelled)


def likely_class(name: str, close: bool = True) -> str | None:
    """The class a folder ``name`` that is not a class name was likely meant to be: the class it spells in another
    case or with other separators (``Bet``, ``Pe-Final``, ``pe final``, ``pe.final``, ``pe__final``), else, when
    ``close``, the class of a usual transliteration (``kuf``, ``vet``, ``fe_sofit``: :func:`transliterated`), the
    closest class name (``bett``, ``shim``, ``aleph``, but also ``test`` for tet: only a guess) or the class of the
    Hebrew letter it is (``א``, ``ץ`` for tsadi_final, ``בּ`` with its points: a hint only, so that such a folder is
    skipped as another folder is, not refused as a misspelt class); None for a class name, a hidden name and a name
    close to none (``misc``)."""
    if name in CLASS_INDEX or name.startswith("."):
        return None
    spelled = re.sub(_SEPARATORS, "_", name.strip().lower())
    if spelled in CLASS_INDEX:
        return spelled
    if not close:
        return None
    letter = "".join(c for c in unicodedata.normalize("NFD", name.strip()) if not unicodedata.combining(c))
    return (transliterated(spelled) or CLASS_OF_GLYPH.get(letter)
            or next(iter(difflib.get_close_matches(spelled, CLASS_NAMES, n=1)), None))


def did_you_mean(folder: str) -> str:
    """``: did you mean 'bet'?`` for a folder ``folder`` that is not a class name, naming its :func:`likely_class`;
    empty when none is likely."""
    likely = likely_class(folder)
    return f": did you mean {likely!r}?" if likely else ""


def misnamed_folders(folders: Iterable[str]) -> list[str]:
    """The ``folders`` (names) that spell a class that has no folder among them in another case or with other
    separators: their images would be skipped and that class left empty (``Bet`` beside no ``bet``). A name only
    close to a class (``test``, ``trash``, ``val`` beside no tet, resh, vav) is another folder: skipped, its skip
    naming the class it may have meant."""
    folders = set(folders)
    return sorted(folder for folder in folders if likely_class(folder, close=False) not in folders | {None})


def misnamed_problem(root: str, folders: Iterable[str]) -> str | None:
    """Why the folder ``root``, holding the folders named ``folders``, is refused as a data root: the
    :func:`misnamed_folders` among them, each named with its class; None when there is none. The one message of
    every command that reads a data root (the pipeline's ExampleGen, letters-evaluate, letters-feedback import)."""
    misnamed = misnamed_folders(folders)
    if not misnamed:
        return None
    return (f"{root} has {len(misnamed)} folder(s) named as a class that has no folder, whose images would not be "
            f"read:\n"
            + "".join(f"  {printable(folder)!r} is not a class folder{did_you_mean(folder)}\n" for folder in misnamed)
            + f"Folder names are the class names in lower case: {', '.join(CLASS_NAMES)} (core/labels.py). "
            f"Rename each (or move it out of {root})")


def in_class_folder(path: str) -> bool:
    """A file the ExampleGen may read as an image: in a class folder, its name not hidden."""
    return os.path.basename(os.path.dirname(path)) in CLASS_INDEX and not is_hidden(path)
