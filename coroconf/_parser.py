"""Text to a tree of sections and items, with line numbers.

The shape is corosync's (exec/coroparse.c), read for its rules:

- One statement per line: ``name {`` opens a section, ``}`` closes one,
  ``key: value`` sets a key. The first ``{`` on a line makes it a section
  opener, else the first ``:`` makes it an item, else a ``}`` closes.
- Trailing and leading blanks (space, tab, no-break space) are ignored, and
  so is a ``:`` or ``{`` left at the end of a name ("totem: {" is "totem").
- A line whose first non-blank character is ``#`` is a comment. There are
  no comments at the end of a line: in ``token: 3000 # ms`` the value is
  ``3000 # ms``.
- ``key=value`` and ``key value`` are not accepted (corosync refuses them
  too); the error says so.
- The value is everything after the first ``:``, so values may contain
  colons (IPv6 addresses, MAC addresses).

This stage knows nothing about which keys exist; :mod:`coroconf._flatten`
does.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigSyntaxError

__all__ = ["RawItem", "RawSection", "parse_text"]

_BLANKS = " \t\u00a0"


@dataclass(frozen=True, slots=True)
class RawItem:
    """``key: value`` as written, on a 1-based line."""

    key: str
    value: str
    line: int


@dataclass(frozen=True, slots=True)
class RawSection:
    """``name { ... }``: its children in file order."""

    name: str
    line: int
    children: tuple["RawItem | RawSection", ...]


def _strip_name(text: str) -> str:
    # coroparse drops blanks, and a ':' or '{' at the end of a name.
    return text.strip(_BLANKS).rstrip(_BLANKS + ":{").strip(_BLANKS)


def _not_a_statement(line: str) -> str:
    reason = "this line is not 'key: value', 'name {' or '}'"
    if "=" in line:
        return reason + " (corosync.conf writes 'key: value', not 'key=value')"
    if len(line.split()) == 2:
        return reason + " (a colon is missing after the key)"
    return reason


def parse_text(text: str, filename: str) -> RawSection:
    """Parse corosync.conf text into a tree rooted at an unnamed section.

    Args:
        text: the whole file.
        filename: used in error messages.

    Returns:
        The root section (name "", line 0); its children are the top-level
        items and sections in file order.

    Raises:
        ConfigSyntaxError: for the first line that breaks the shape, or for a
            section left open at the end of the file.
    """
    # stack of (name, line, children) for the sections currently open
    stack: list[tuple[str, int, list[RawItem | RawSection]]] = [("", 0, [])]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r").rstrip(_BLANKS)
        body = line.lstrip(_BLANKS)
        if not body or body.startswith("#"):
            continue
        brace = line.find("{")
        if brace >= 0:
            name = _strip_name(line[:brace])
            if not name:
                raise ConfigSyntaxError("a section name is missing before '{'",
                                        filename=filename, line=number)
            if line[brace + 1:].strip(_BLANKS):
                raise ConfigSyntaxError(
                    f"unexpected text after '{{' of section '{name}' "
                    "(put each key on its own line)", filename=filename, line=number)
            stack.append((name, number, []))
            continue
        colon = line.find(":")
        if colon >= 0:
            key = _strip_name(line[:colon])
            if not key:
                raise ConfigSyntaxError("a key name is missing before ':'",
                                        filename=filename, line=number)
            value = line[colon + 1:].strip(_BLANKS)
            stack[-1][2].append(RawItem(key=key, value=value, line=number))
            continue
        if "}" in line:
            if body != "}":
                raise ConfigSyntaxError("unexpected text before or after '}'",
                                        filename=filename, line=number)
            if len(stack) == 1:
                raise ConfigSyntaxError("'}' closes no open section",
                                        filename=filename, line=number)
            name, opened, children = stack.pop()
            stack[-1][2].append(RawSection(name=name, line=opened, children=tuple(children)))
            continue
        raise ConfigSyntaxError(_not_a_statement(body), filename=filename, line=number)
    if len(stack) > 1:
        name, opened, _children = stack[-1]
        raise ConfigSyntaxError(f"section '{name}' is never closed (a '}}' is missing)",
                                filename=filename, line=opened)
    return RawSection(name="", line=0, children=tuple(stack[0][2]))
