"""CuratorFormat's fast path on the raw text (``_well_formed_text``) gives exactly the
instance the JSON paths give, or leaves the text to them: on Curator's own bytes, on
anything this format writes, on hostile variations of a well-formed document, and on
arbitrary edits of one. Also: the shortcuts it takes (no round of the registration time,
``_prevalidated`` filling every field) are exact."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zkwarden.discovery import CuratorFormat, ServiceInstance, ServiceType
from zkwarden.discovery.formats import curator
from zkwarden.discovery.instance import _prevalidated

from ._edited import edited_documents
from ._edited import same_instance as _same
from .strategies_hypothesis import instances

_DECODER = json.JSONDecoder(parse_constant=curator._reject_constant)
_COMPACT = (",", ":")


def _slow(text: str) -> ServiceInstance | None:
    """What the general path (no fast path at all) makes of ``text``."""
    try:
        obj = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    result = CuratorFormat()._from_json("svc", "node-id", obj)
    return None if isinstance(result, str) else result


def _check(text: str) -> ServiceInstance | None:
    """Assert the text fast path agrees with both JSON paths; return its result."""
    fast = curator._well_formed_text(text)
    if fast is None:
        return None
    obj = _DECODER.decode(text)  # the fast path took it: it must be JSON
    assert _same(fast, curator._well_formed(obj)), text
    assert _same(fast, _slow(text)), text
    return fast


# Instances the fast path is meant for: what Curator registers (simple ids, plain ASCII
# addresses and string payloads).
_simple_name = st.from_regex(r"[A-Za-z0-9_\-.:@]{1,12}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
# Printable ASCII without the two characters JSON escapes ('"' and '\\' are left to json).
_ascii = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
    max_size=10,
)
_simple_instances = instances(
    name=_simple_name,
    id=_simple_name,
    address=st.none() | _ascii.filter(bool),
    payload=st.dictionaries(_ascii.filter(lambda k: k not in ("zkwarden", "@class")), _ascii,
                            max_size=3),
    registration_time=st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1).map(
        lambda ms: ms / 1000
    ),
    uri_spec=st.none(),
    weight=st.none(),
    zone=st.none(),
    tags=st.just(()),
    metadata=st.just({}),
    protocol=st.none(),
)
_formats = st.builds(
    CuratorFormat,
    compatible=st.booleans(),
    payload_class=st.sampled_from(["java.util.LinkedHashMap", None, "com.x.Details"]),
)

_BASE = (
    '{"name":"svc","id":"6e79e24d-cf5c-4c85-8672-23e87fab022a","address":"10.0.0.1",'
    '"port":8080,"sslPort":null,"payload":{"@class":"java.util.LinkedHashMap","zone":"z0"},'
    '"registrationTimeUTC":1795973777585,"serviceType":"DYNAMIC","uriSpec":null}'
)

# sslPort set, "enabled" written (compatible=False), an empty payload.
_BASE2 = (
    _BASE.replace('"sslPort":null', '"sslPort":443')
    .replace('{"@class":"java.util.LinkedHashMap","zone":"z0"}', "{}")[:-1]
    + ',"enabled":false}'
)


def test_curators_own_document_takes_the_fast_path() -> None:
    assert _check(_BASE2) is not None
    fast = _check(_BASE)
    assert fast is not None
    assert (fast.id, fast.address, fast.port, fast.payload) == (
        "6e79e24d-cf5c-4c85-8672-23e87fab022a", "10.0.0.1", 8080, {"zone": "z0"}
    )
    assert fast.registration_time == 1795973777.585


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_simple_instances, _formats)
def test_simple_instances_take_the_fast_path_and_decode_exactly(
    inst: ServiceInstance, fmt: CuratorFormat
) -> None:
    text = fmt.encode(inst).decode()
    fast = _check(text)
    assert fast is not None, text
    assert _same(fast, fmt.canonical(inst))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), _formats)
def test_any_instance_agrees_with_the_general_path(
    inst: ServiceInstance, fmt: CuratorFormat
) -> None:
    text = fmt.encode(inst).decode()
    fast = _check(text)
    if fast is not None:
        assert _same(fast, fmt.canonical(inst))


# Characters that matter to the pattern or to JSON: quotes, escapes, digits, signs,
# structure, the dots of "." and "..", whitespace, non-ASCII and control characters.
_EDIT_CHARS = '"\\{}[],:.-+0159eE nultrfa@/é\x00\x1f\x7f'


@st.composite
def _edited(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from([_BASE, _BASE2]))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=4)):]
            continue
        piece = draw(st.text(alphabet=_EDIT_CHARS, min_size=1, max_size=3))
        text = text[:at] + piece + text[at + (len(piece) if kind == "replace" else 0):]
    return text


@settings(max_examples=1500)
@given(_edited())
def test_an_edited_document_is_decoded_alike_or_left_to_json(text: str) -> None:
    _check(text)


_VARIANTS: dict[str, list[Any]] = {
    "name": ["svc", "", None, 3, "a/b", ".", "..", ".a", "a.", "...", "é", "x\x00", "a b",
             "svc-1.a:b@c", 'a"b', "a\\b"],
    "id": ["abc", "", None, [], ".", "..", "id/x", "\udc80", "ü", "@", "-"],
    "address": ["h", "", None, 7, "hôte", True, " ", "a\tb", "a\\b", '"', "\x7f", "~"],
    "port": [0, 65535, 65536, 99999, 100000, -1, -0, True, "8080", 8080.0, None, 2**70],
    "sslPort": [443, None, False, "x", 70000, 0],
    "payload": [None, {}, {"a": 1}, {"zkwarden": {"weight": 3}}, {"zkwarden": "x"},
                {"@class": "x"}, {"@class": "x", "@class ": "y"}, ["java.lang.String", "s"],
                "s", {"k": "é"}, {"é": "v"}, {"k": None}, {"k": {"n": "v"}}, {"": ""},
                {"k": 'v"w'}, {"k\\": "v"}, {"a": "1", "b": "2", "c": "3"}],
    "registrationTimeUTC": [0, -5, 2**53 - 1, 2**53, -(2**53), -(2**53) + 1, 2**60, 1.5,
                            "123", True, None, 1795973777585, 10**15 + 1],
    "serviceType": ["STATIC", "PERMANENT", "DYNAMIC_SEQUENTIAL", "bogus", None, [1], {},
                    "dynamic", "DYNAMIC "],
    "uriSpec": [None, {"parts": [{"value": "http://", "variable": False}]}, "x"],
    "enabled": [True, False, None, "false", 1, 0],
}
_ORDER = ["name", "id", "address", "port", "sslPort", "payload", "registrationTimeUTC",
          "serviceType", "uriSpec", "enabled"]


def _variant_texts() -> list[str]:
    docs = edited_documents(json.loads(_BASE), _VARIANTS, 1500, seed=17)
    texts = []
    for doc in docs:
        ordered = {k: doc[k] for k in _ORDER if k in doc}
        texts.append(json.dumps(ordered, separators=_COMPACT, ensure_ascii=False))
        texts.append(json.dumps(ordered, separators=_COMPACT))  # \\u escapes
        texts.append(json.dumps(dict(reversed(ordered.items())), separators=_COMPACT))
    return texts


def test_hostile_field_values_agree_with_the_general_path() -> None:
    hits = 0
    for text in _variant_texts():
        if _check(text) is not None:
            hits += 1
    assert hits > 150  # the comparison did exercise the fast path (196 with this seed)


def test_decode_uses_the_text_path_and_matches_the_format_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fmt = CuratorFormat()
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, rejected alike.
    datas = [t.encode("utf-8", "surrogatepass") for t in _variant_texts()]
    fast = [fmt.decode("svc", "node-id", d) for d in datas]
    with monkeypatch.context() as m:
        m.setattr(curator, "_well_formed_text", lambda text: None)
        m.setattr(curator, "_well_formed", lambda obj: None)
        slow = [fmt.decode("svc", "node-id", d) for d in datas]
    assert sum(a is not None for a in fast) > 500
    for data, a, b in zip(datas, fast, slow, strict=True):
        assert _same(a, b), data


@given(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1))
def test_millis_over_1000_needs_no_rounding(millis: int) -> None:
    # ServiceInstance keeps round(registration_time, 3); the fast path skips the round.
    assert round(millis / 1000, 3) == millis / 1000


@given(_simple_instances)
def test_prevalidated_sets_every_field_as_the_constructor_does(inst: ServiceInstance) -> None:
    built = _prevalidated(
        inst.name, inst.id, inst.address, inst.port, inst.ssl_port, dict(inst.payload),
        inst.registration_time, inst.service_type, inst.enabled,
    )
    # Every field readable (a slot left unset raises AttributeError) and equal.
    assert _same(built, inst)
    assert built == inst and hash(built) == hash(inst)


def test_a_service_type_the_pattern_knows_is_every_service_type() -> None:
    for kind in ServiceType:
        text = _BASE.replace('"DYNAMIC"', f'"{kind.value}"')
        fast = _check(text)
        assert fast is not None and fast.service_type is kind


def test_a_remembered_payload_is_never_shared_between_instances() -> None:
    first = curator._well_formed_text(_BASE)
    second = curator._well_formed_text(_BASE)
    assert first is not None and second is not None
    assert first.payload == second.payload == {"zone": "z0"}
    assert first.payload is not second.payload
    first.payload["zone"] = "changed"  # a careless caller: read-only by contract
    third = curator._well_formed_text(_BASE)
    assert third is not None and third.payload == {"zone": "z0"}


def test_the_payload_memo_stays_bounded() -> None:
    for i in range(3 * curator._PAYLOADS_SIZE):
        text = _BASE.replace('"zone":"z0"', f'"zone":"z{i}"')
        inst = curator._well_formed_text(text)
        assert inst is not None and inst.payload == {"zone": f"z{i}"}
        assert len(curator._PAYLOADS) <= curator._PAYLOADS_SIZE
