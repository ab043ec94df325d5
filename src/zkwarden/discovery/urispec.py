"""Curator's ``UriSpec`` template: ``"{scheme}://{address}:{port}"``.

A template is literal text with ``{variable}`` parts. Curator stores it as a list of parts
(``{"parts": [{"value": "scheme", "variable": true}, ...]}``); zkwarden keeps the template
string and converts at the format boundary. The rules follow Curator 5.x exactly:

- the text is split on ``{`` and ``}``; a ``{`` inside a variable, a ``}`` without a ``{``, or
  an unclosed ``{`` is an error;
- variable names are trimmed; ``{}`` (an empty variable) produces no part;
- building: ``scheme`` is ``http``, or ``https`` when the instance has an SSL port; ``name``,
  ``id``, ``address``, ``port``, ``ssl-port``, ``registration-time-utc`` (milliseconds) and
  ``service-type`` (lower case) come from the instance; ``[`` and ``]`` give a literal ``{``
  and ``}``; a missing value or an unknown variable adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import ConfigurationError

__all__ = ("UriPart", "parse_uri_spec", "format_uri_spec", "build_uri")

#: One part of a template: (text, is_variable).
UriPart = tuple[str, bool]


def parse_uri_spec(template: str) -> list[UriPart]:
    """Split ``template`` into parts the way Curator's ``UriSpec(String)`` does.

    Raises:
        ConfigurationError: nested ``{``, ``}`` without ``{``, or an unclosed ``{``.
    """
    parts: list[UriPart] = []
    in_variable = False
    literal: list[str] = []
    for ch in template:
        if ch == "{":
            if in_variable:
                raise ConfigurationError(
                    f"'{{' is not allowed inside a uri_spec variable: {template!r}"
                )
            if literal:
                parts.append(("".join(literal), False))
                literal = []
            in_variable = True
        elif ch == "}":
            if not in_variable:
                raise ConfigurationError(f"'}}' must be preceded by '{{' in uri_spec: {template!r}")
            name = "".join(literal).strip()
            literal = []
            # Curator's tokenizer never sees a token between "{" and "}" when they are
            # adjacent, so "{}" adds no part; a blank name "{ }" would build to nothing too.
            if name:
                parts.append((name, True))
            in_variable = False
        else:
            literal.append(ch)
    if in_variable:
        raise ConfigurationError(f"unclosed '{{' in uri_spec: {template!r}")
    if literal:
        parts.append(("".join(literal), False))
    return parts


def format_uri_spec(parts: Iterable[UriPart]) -> str:
    """Turn parts back into a template string (the inverse of :func:`parse_uri_spec`).

    Literal braces, which a template cannot hold as text, become the ``{[}``/``{]}``
    variables that build to ``{``/``}``. Blank variable names are dropped (they build to
    nothing). Never raises.
    """
    out: list[str] = []
    for value, variable in parts:
        if variable:
            name = value.strip()
            if name and "{" not in name and "}" not in name:
                out.append("{" + name + "}")
        else:
            out.append(_escape_literal(value))
    return "".join(out)


def _escape_literal(text: str) -> str:
    # "{" and "}" cannot appear as template text; Curator spells them as the variables
    # "[" and "]".
    return "".join("{[}" if ch == "{" else "{]}" if ch == "}" else ch for ch in text)


def build_uri(template: str, values: Mapping[str, object]) -> str:
    """Fill ``template`` from ``values`` (variable name -> value); see the module docstring.

    ``None`` values and unknown variables add nothing, as in Curator.

    Raises:
        ConfigurationError: the template is malformed.
    """
    out: list[str] = []
    for text, variable in parse_uri_spec(template):
        if not variable:
            out.append(text)
            continue
        value = values.get(text)
        if value is None:
            continue
        if isinstance(value, bool):
            # Java's StringBuilder.append(Boolean) writes lower case.
            out.append("true" if value else "false")
        else:
            out.append(str(value))
    return "".join(out)
