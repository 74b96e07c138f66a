"""The 27 classes, in the canonical HHD order (index = label). Never derive this by sorting folders."""

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
