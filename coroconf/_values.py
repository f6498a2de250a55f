"""Reading one value: integers, words, switches, DSCP, addresses.

Each reader takes the raw text and returns the typed value or raises
:class:`ConfigValueError` with a sentence naming the key, the section, what
was expected (with the unit) and what was found.
"""

from __future__ import annotations

import difflib
import ipaddress
import re

from .errors import ConfigValueError
from .schema import INTEGER_RANGES, KeySpec

__all__ = ["convert_value", "nearest", "parse_ip", "is_host_name"]

_DECIMAL = re.compile(r"[+-]?[0-9]+")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_DSCP_NAMES = {
    "cs0": 0, "cs1": 8, "cs2": 16, "cs3": 24, "cs4": 32, "cs5": 40, "cs6": 48, "cs7": 56,
    "af11": 10, "af12": 12, "af13": 14, "af21": 18, "af22": 20, "af23": 22,
    "af31": 26, "af32": 28, "af33": 30, "af41": 34, "af42": 36, "af43": 38, "ef": 46,
}


def nearest(word: str, candidates: list[str] | tuple[str, ...]) -> str | None:
    """The candidate closest to ``word`` by spelling, if any is close."""
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``text`` spells, or None if it is not an IP literal."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def is_host_name(text: str) -> bool:
    """True if ``text`` could be a DNS host name (not a mangled IP address)."""
    if not text or len(text) > 253 or re.fullmatch(r"[0-9.]+", text):
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in text.rstrip(".").split("."))


def _where(key: str, section: str) -> str:
    return f"'{key}' in section '{section}'"


def _comment_hint(value: str) -> str:
    return " (comments must be on a line of their own)" if "#" in value else ""


def _integer(spec: KeySpec, value: str, key: str, section: str, *, filename: str,
             line: int) -> int:
    low, high = INTEGER_RANGES[spec.cmap_type]
    if spec.kind == "flag":
        expected = f"0 (off) or 1 (on), or a number up to {high}"
    else:
        unit = f" of {spec.unit_words}" if spec.unit else ""
        expected = f"a whole number{unit} from {low} to {high}"
    if not _DECIMAL.fullmatch(value) or not low <= int(value) <= high:
        raise ConfigValueError(
            f"{_where(key, section)} must be {expected}, not '{value}'{_comment_hint(value)}",
            filename=filename, line=line, key=f"{section}.{key}")
    return int(value)


def _dscp(value: str, key: str, section: str, *, filename: str, line: int) -> int:
    if value in _DSCP_NAMES:
        return _DSCP_NAMES[value]
    try:
        number = int(value, 0)
    except ValueError:
        number = -1
    if 0 <= number <= 63:
        return number
    raise ConfigValueError(
        f"{_where(key, section)} must be a number from 0 to 63 or a DSCP name "
        f"(cs0..cs7, af11..af43, ef), not '{value}'",
        filename=filename, line=line, key=f"{section}.{key}")


def _word(spec: KeySpec, value: str, key: str, section: str, *, filename: str,
          line: int) -> str:
    if value in spec.choices:
        return value
    guess = nearest(value, spec.choices)
    hint = f" (did you mean '{guess}'?)" if guess else ""
    raise ConfigValueError(
        f"{_where(key, section)} must be one of {', '.join(spec.choices)}, "
        f"not '{value}'{hint}{_comment_hint(value)}",
        filename=filename, line=line, key=f"{section}.{key}")


def _address(value: str, key: str, section: str, *, filename: str, line: int) -> str:
    if parse_ip(value) is not None or is_host_name(value):
        return value
    raise ConfigValueError(
        f"{_where(key, section)} is not an IP address or host name: '{value}'"
        f"{_comment_hint(value)}", filename=filename, line=line, key=f"{section}.{key}")


def convert_value(spec: KeySpec, value: str, key: str, section: str, *, filename: str,
                  line: int) -> int | str:
    """Check ``value`` against ``spec`` and return it typed.

    Args:
        spec: how the key is read.
        value: the text after the colon, blanks stripped.
        key: the key as written (for the message).
        section: the dotted section path (for the message).
        filename: for the message.
        line: for the message.

    Returns:
        An int for integer and DSCP keys, else the string.

    Raises:
        ConfigValueError: the value is not one the key can take.
    """
    if spec.cmap_type in INTEGER_RANGES and spec.kind in ("int", "flag"):
        return _integer(spec, value, key, section, filename=filename, line=line)
    if spec.kind == "dscp":
        return _dscp(value, key, section, filename=filename, line=line)
    if spec.kind in ("choice", "yesno", "onoff", "switch"):
        return _word(spec, value, key, section, filename=filename, line=line)
    if spec.kind == "addr":
        return _address(value, key, section, filename=filename, line=line)
    return value
