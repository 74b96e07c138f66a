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


def label_index(name: str) -> int:
    """Index of a class folder name; a clear error for anything outside the list."""
    try:
        return CLASS_INDEX[name]
    except KeyError:
        raise ValueError(f"unknown class {name!r}; expected one of: {', '.join(CLASS_NAMES)}") from None
