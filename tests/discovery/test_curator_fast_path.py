"""CuratorFormat.decode's fast path for well-formed documents gives exactly the instance
the general path gives (or leaves the document to it), on valid and hostile variations."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zkwarden.discovery import CuratorFormat
from zkwarden.discovery.formats import curator

from ._edited import edited_documents
from ._edited import same_instance as _same

_BASE: dict[str, Any] = {
    "name": "svc", "id": "6e79e24d-cf5c-4c85-8672-23e87fab022a", "address": "10.0.0.1",
    "port": 8080, "sslPort": None,
    "payload": {"@class": "java.util.LinkedHashMap", "zone": "z0"},
    "registrationTimeUTC": 1795973777585, "serviceType": "DYNAMIC", "uriSpec": None,
}
_VARIANTS: dict[str, list[Any]] = {
    "name": ["svc", "", None, 3, "a/b", ".", "..", "é", "x\x00", "svc-1.a:b@c"],
    "id": ["abc", "", None, [], ".", "..", "id/x", "\udc80", "ü"],
    "address": ["h", "", None, 7, "hôte", True],
    "port": [0, 65535, 65536, -1, True, "8080", 8080.0, None],
    "sslPort": [443, None, False, "x", 70000],
    "payload": [None, {}, {"a": 1}, {"zkwarden": {"weight": 3}}, {"@class": "x"},
                ["java.lang.String", "s"], "s", {"k": "é"}, {"é": "v"}, {"k": None},
                {"k": {"n": "v"}}],
    "registrationTimeUTC": [0, -5, 2**60, 1.5, "123", True, None, 1795973777585],
    "serviceType": ["STATIC", "PERMANENT", "DYNAMIC_SEQUENTIAL", "bogus", None, [1], {}],
    "uriSpec": [None, {"parts": [{"value": "http://", "variable": False}]}, "x"],
    "enabled": [True, False, None, "false", 1],
    "extra": ["x"],
}


def _general(fmt: CuratorFormat, doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(curator, "_well_formed", lambda obj: None)
        return fmt.decode("svc", "node-id", json.dumps(doc).encode())


def test_a_well_formed_document_takes_the_fast_path() -> None:
    obj = json.loads(json.dumps(_BASE))
    fast = curator._well_formed(obj)
    assert fast is not None
    assert _same(fast, CuratorFormat()._from_json("svc", "n", obj))  # type: ignore[arg-type]


def test_fast_path_matches_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = CuratorFormat()
    docs = edited_documents(_BASE, _VARIANTS, 400, seed=7)
    hits = 0
    for doc in docs:
        data = json.dumps(doc).encode()
        if curator._well_formed(json.loads(data)) is not None:
            hits += 1
        assert _same(fmt.decode("svc", "node-id", data), _general(fmt, doc, monkeypatch)), doc
    assert hits > 50  # the comparison did exercise the fast path
