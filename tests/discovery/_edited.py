"""Documents edited field by field, for checking a fast path against the general one."""

from __future__ import annotations

import random
from typing import Any

#: a variant value that means "the field is absent"
MISSING = object()


def edited_documents(base: dict[str, Any], variants: dict[str, list[Any]], count: int,
                     seed: int) -> list[dict[str, Any]]:
    """``base`` with each field set to each of its variants (or removed) in turn, then
    ``count`` documents with three random fields edited at once."""
    rnd = random.Random(seed)
    docs: list[dict[str, Any]] = []

    def edit(doc: dict[str, Any], key: str, value: Any) -> None:
        if value is MISSING:
            doc.pop(key, None)
        else:
            doc[key] = value

    for key, values in variants.items():
        for value in [*values, MISSING]:
            doc = dict(base)
            edit(doc, key, value)
            docs.append(doc)
    for _ in range(count):
        doc = dict(base)
        for key in rnd.sample(list(variants), 3):
            edit(doc, key, rnd.choice([*variants[key], MISSING]))
        docs.append(doc)
    return docs
