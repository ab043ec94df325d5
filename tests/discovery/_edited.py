"""Documents edited field by field, for checking a fast path against the general one."""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

from zkwarden.discovery import ServiceInstance

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


def same_instance(a: ServiceInstance | None, b: ServiceInstance | None) -> bool:
    """Both None, or equal field by field with the same types (a fast path must build
    exactly what the general one does, not merely equal values)."""
    if a is None or b is None:
        return a is b
    return all(
        getattr(a, f.name) == getattr(b, f.name)
        and type(getattr(a, f.name)) is type(getattr(b, f.name))
        for f in fields(ServiceInstance)
    )
