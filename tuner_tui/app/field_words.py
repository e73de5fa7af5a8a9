"""The form's words for config fields, so that every message the app shows speaks as the form does.

The engine's messages name fields as the code does (`batch_size: must be …`); the form calls the
same field "batch size". `in_form_words` turns a message's leading field name into the form's.
"""

from __future__ import annotations

import re

FIELD_LABELS: dict[str, str] = {
    "dataset": "dataset",
    "data_root": "data root",
    "hidden": "hidden",
    "lr": "learning rate",
    "batch_size": "batch size",
    "epochs": "epochs",
    "reg": "L2 reg (λ)",
    "seed": "seed",
    "conventions": "conventions",
    "engine": "engine",
    "device": "device",
    "chance_patience": "chance patience",
    "validation": "validation share",
    "memory": "memory",
}
_LEADING_FIELD = re.compile(r"^([a-z_]+): ")


def field_label(name: str) -> str:
    """The form's name for config field `name` (`batch_size` → `batch size`)."""
    return FIELD_LABELS.get(name, name.replace("_", " "))


def field_list(names: list[str] | tuple[str, ...]) -> str:
    """Fields in the form's words, in the form's order where known: `learning rate, batch size`."""
    order = list(FIELD_LABELS)
    ordered = sorted(names, key=lambda n: order.index(n) if n in order else len(order))
    return ", ".join(field_label(name) for name in ordered)


def in_form_words(message: str) -> str:
    """`batch_size: must be in [1, 300] …` → `batch size: must be in [1, 300] …`."""
    match = _LEADING_FIELD.match(message)
    if match is None or match.group(1) not in FIELD_LABELS:
        return message
    return field_label(match.group(1)) + message[match.end(1):]
