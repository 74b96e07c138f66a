"""A message's text as C++ ``Message::DebugString()`` writes it (protobuf 3.21, TF Serving 2.16.1's), for the
error messages that quote one (a SignatureDef in classifier.cc's and regressor.cc's).

Python's printers each differ from it: ``str()`` (upb) writes map entries in the order they were inserted, fields
in the order the .proto declares them (a TensorInfo's ``coo_sparse`` before its ``dtype``) and UTF-8 unescaped;
``text_format.MessageToString`` writes a float 1.0 as ``1.0`` and drops a map entry's key or value that is the
default. C++'s TextFormat::Printer writes fields by number, map entries sorted by key (MapFieldPrinterHelper::
SortMap), each with its key and value, strings CEscape'd (octal for a byte that is not printable ASCII), enums by
name (by number when the value has none), floats and doubles by SimpleFtoa / SimpleDtoa (the shortest of ``%.6g``
or ``%.9g``, ``%.15g`` or ``%.17g``, that reads back as the same value), nested messages indented two spaces.
"""
from __future__ import annotations

import math
import struct

from google.protobuf import descriptor

from serving.status import c_escape

_Field = descriptor.FieldDescriptor


def debug_string(message) -> str:
    lines: list[str] = []
    _print_message(message, "", lines)
    return "".join(lines)


def _print_message(message, indent: str, lines: list[str]) -> None:
    for field, value in message.ListFields():
        name = f"[{field.full_name}]" if field.is_extension else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields   # an entry's key (1) and value (2)
            for key in sorted(value):
                lines.append(f"{indent}{name} {{\n")
                _print_field(key_field, "key", key, indent + "  ", lines)
                _print_field(value_field, "value", value[key], indent + "  ", lines)
                lines.append(f"{indent}}}\n")
        elif field.label == _Field.LABEL_REPEATED:
            for item in value:
                _print_field(field, name, item, indent, lines)
        else:
            _print_field(field, name, value, indent, lines)


def _print_field(field, name: str, value, indent: str, lines: list[str]) -> None:
    if field.cpp_type == _Field.CPPTYPE_MESSAGE:
        lines.append(f"{indent}{name} {{\n")
        _print_message(value, indent + "  ", lines)
        lines.append(f"{indent}}}\n")
    else:
        lines.append(f"{indent}{name}: {_scalar(field, value)}\n")


def _scalar(field, value) -> str:
    kind = field.cpp_type
    if kind == _Field.CPPTYPE_STRING:
        raw = value.encode("utf-8") if isinstance(value, str) else value
        return f'"{c_escape(raw)}"'
    if kind == _Field.CPPTYPE_ENUM:
        known = field.enum_type.values_by_number.get(value)
        return known.name if known is not None else str(value)
    if kind == _Field.CPPTYPE_BOOL:
        return "true" if value else "false"
    if kind == _Field.CPPTYPE_FLOAT:
        return _shortest(value, 6, 9, lambda text: struct.unpack("f", struct.pack("f", float(text)))[0])
    if kind == _Field.CPPTYPE_DOUBLE:
        return _shortest(value, 15, 17, float)
    return str(value)


def _shortest(value: float, digits: int, more_digits: int, read) -> str:
    """SimpleFtoa / SimpleDtoa: ``%.<digits>g`` if it reads back as ``value``, else ``%.<more_digits>g``;
    ``inf``, ``-inf``, ``nan``."""
    if math.isnan(value):
        return "nan"
    text = f"{value:.{digits}g}"
    try:
        if math.isinf(value) or read(text) == value:
            return text
    except OverflowError:   # beyond the largest float: not the value
        pass
    return f"{value:.{more_digits}g}"
