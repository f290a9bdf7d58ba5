"""A minimal writer of protobuf text format, enough for Triton's ``config.pbtxt``.

Messages are dicts (field -> value); a list of dicts is a repeated message field (each item
written as its own ``field { ... }``, which is also how map entries are written); a list of
scalars is written ``field: [a, b]``; ``Enum("KIND_GPU")`` is written bare; str values quoted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class Enum(str):
    """An enum value (written without quotes)."""


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # text-format string escapes agree with JSON's for our content
    raise TypeError(f"cannot write {value!r} in protobuf text format")


def to_pbtxt(message: Mapping[str, Any], indent: int = 0) -> str:
    """``message`` in protobuf text format, one field per line."""
    pad = "  " * indent
    lines = []
    for field, value in message.items():
        if isinstance(value, Mapping):
            lines += [f"{pad}{field} {{", to_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            for item in value:
                lines += [f"{pad}{field} {{", to_pbtxt(item, indent + 1), f"{pad}}}"]
        elif isinstance(value, list):
            lines.append(f"{pad}{field}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{field}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)
