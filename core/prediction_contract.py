"""The contract of one ``predict_images`` answer, a row of named outputs as TF Serving's REST API writes it: the
probabilities a distribution over the 27 classes, the top classes distinct and best first, their scores the
probabilities of those classes with none left out higher, and ``top_classes`` / ``top_letters`` the names and
letters of ``top_indices``. The web client refuses an answer that breaks it; the ServingValidator does not bless
a model that answers one.
"""
from __future__ import annotations

import math

from core import configs
from core.labels import CLASS_NAMES, GLYPHS, NUM_CLASSES

PROBABILITY_SLACK = 1e-4   # a softmax's float32 rounding past 0 or 1, or of a score read twice
DISTRIBUTION_SLACK = 1e-3  # how far from 1 the sum of the 27 float32 probabilities may round


class BrokenContract(ValueError):
    """A prediction that does not follow the model's contract; the message says which part."""


def is_number(value) -> bool:
    """A finite JSON number (TF Serving writes a non-finite float as a bare NaN or Infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_probability(value) -> bool:
    return is_number(value) and -PROBABILITY_SLACK <= value <= 1 + PROBABILITY_SLACK


def probability(value) -> float:
    return min(1.0, max(0.0, float(value)))   # a float's rounding past 0 or 1 taken back (feedback takes 0..1)


def check_probabilities(values) -> list[float]:
    """``values`` as a distribution over the 27 classes (as the model's softmax answers); BrokenContract for
    anything else."""
    if not isinstance(values, list) or len(values) != NUM_CLASSES:
        size = f"{len(values)} numbers" if isinstance(values, list) else type(values).__name__
        raise BrokenContract(f"the prediction's probabilities are {size}, not one for each of the "
                             f"{NUM_CLASSES} classes (another model's answer?)")
    if not all(_is_probability(v) for v in values):
        raise BrokenContract("the prediction's probabilities are not all numbers between 0 and 1")
    total = math.fsum(values)
    if abs(total - 1) > DISTRIBUTION_SLACK:
        raise BrokenContract(f"the prediction's probabilities sum to {total:.6g}, not 1")
    return [probability(v) for v in values]


def _class_index(value) -> int:
    if not (is_number(value) and float(value).is_integer() and 0 <= value < NUM_CLASSES):
        raise BrokenContract(f"the prediction's top class {value!r} is not an index of the {NUM_CLASSES} classes")
    return int(value)


def _names_match(row: dict, output: str, names: tuple, indices: list[int]) -> None:
    """``row``'s ``output`` (when the row has it) names the classes of ``indices``, in their order."""
    given = row.get(output)
    if given is not None and given != [names[index] for index in indices]:
        raise BrokenContract(f"the prediction's {output} {given!r:.120} are not those of its top classes "
                             f"{indices}")


def check_prediction(row) -> tuple[list[int], list[float], list[float] | None]:
    """(the top class indices, their scores, the 27 probabilities or None without them) of one answer ``row``,
    checked against the contract. Without ``top_indices``/``top_scores`` (an output filter) the top three
    classes are read from the probabilities. BrokenContract for a row that breaks it."""
    if not isinstance(row, dict):
        raise BrokenContract("the prediction is not a map of named outputs")
    values = row.get(configs.PROBABILITIES_OUTPUT)
    probabilities = None if values is None else check_probabilities(values)
    indices = row.get(configs.TOP_INDICES_OUTPUT)
    scores = row.get(configs.TOP_SCORES_OUTPUT)
    if indices is None or scores is None:
        if probabilities is None:
            raise BrokenContract("the prediction has neither top_indices/top_scores nor 27 probabilities")
        indices = sorted(range(NUM_CLASSES), key=lambda i: -probabilities[i])[:3]
        scores = [probabilities[i] for i in indices]
    if not isinstance(indices, list) or not isinstance(scores, list) or not indices or len(indices) != len(scores):
        raise BrokenContract("the prediction's top_indices and top_scores are not two lists of the same length")
    indices = [_class_index(index) for index in indices]
    if len(set(indices)) != len(indices):
        raise BrokenContract(f"the prediction's top classes repeat a class: {indices}")
    if not all(_is_probability(score) for score in scores):
        raise BrokenContract("the prediction's top scores are not all numbers between 0 and 1")
    if any(later > earlier + PROBABILITY_SLACK for earlier, later in zip(scores, scores[1:])):
        raise BrokenContract(f"the prediction's top scores are not best first: {scores}")
    if probabilities is not None:
        if any(abs(score - probabilities[index]) > PROBABILITY_SLACK for index, score in zip(indices, scores)):
            raise BrokenContract("the prediction's top scores are not the probabilities of its top classes")
        if max((p for i, p in enumerate(probabilities) if i not in indices), default=0.0) > \
                scores[-1] + PROBABILITY_SLACK:
            raise BrokenContract("the prediction's top classes leave out a class of higher probability")
    elif math.fsum(scores) > 1 + DISTRIBUTION_SLACK:
        raise BrokenContract(f"the prediction's top scores sum to {math.fsum(scores):.6g}, over 1")
    _names_match(row, configs.TOP_CLASSES_OUTPUT, CLASS_NAMES, indices)
    _names_match(row, configs.TOP_LETTERS_OUTPUT, GLYPHS, indices)
    return indices, [probability(score) for score in scores], probabilities
