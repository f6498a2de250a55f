"""Config back to corosync.conf text.

Writes the keys the file set (``Config.source_items``), regrouped into
sections the way corosync's parser split them apart: an interface section
per link with its ``linknumber``, a node section per nodelist entry, a
logger_subsys section per subsystem. Loading the output gives an equal
Config. Defaults are not written, so the text stays the user's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .model import Config

__all__ = ["render"]


@dataclass
class _Section:
    name: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    children: dict[str, "_Section"] = field(default_factory=dict)

    def child(self, ident: str, name: str, first: tuple[str, str] | None = None) -> "_Section":
        if ident not in self.children:
            self.children[ident] = _Section(name, [first] if first else [])
        return self.children[ident]


_SPECIAL = (
    (re.compile(r"totem\.interface\.(\d+)\.member\.(\d+)"), "member"),
    (re.compile(r"totem\.interface\.(\d+)\.(.+)"), "interface"),
    (re.compile(r"nodelist\.node\.(\d+)\.(.+)"), "node"),
    (re.compile(r"logging\.logger_subsys\.([^.]+)\.(.+)"), "subsys"),
    (re.compile(r"uidgid\.config\.(uid|gid)\.(\d+)"), "uidgid"),
)


def _place(root: _Section, key: str, value: str) -> None:
    for pattern, kind in _SPECIAL:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        first, second = match.group(1), match.group(2)
        if kind == "member":
            interface = root.child("totem", "totem").child(
                f"interface{first}", "interface", ("linknumber", first))
            interface.child(f"member{second}", "member").lines.append(("memberaddr", value))
        elif kind == "interface":
            root.child("totem", "totem").child(
                f"interface{first}", "interface", ("linknumber", first)).lines.append((second, value))
        elif kind == "node":
            root.child("nodelist", "nodelist").child(f"node{first}", "node").lines.append(
                (second, value))
        elif kind == "subsys":
            subsys = root.child("logging", "logging").child(
                f"subsys{first}", "logger_subsys", ("subsys", first))
            if second != "subsys":
                subsys.lines.append((second, value))
        else:
            root.child("uidgid", "uidgid").lines.append((first, second))
        return
    *sections, name = key.split(".")
    node = root
    for section in sections:
        node = node.child(section, section)
    node.lines.append((name, value))


def _write(section: _Section, depth: int, out: list[str]) -> None:
    indent = "\t" * depth
    for key, value in section.lines:
        out.append(f"{indent}{key}: {value}".rstrip())
    for child in section.children.values():
        out.append(f"{indent}{child.name} {{")
        _write(child, depth + 1, out)
        out.append(f"{indent}}}")


def render(config: Config) -> str:
    """The corosync.conf text for ``config`` (the keys its file set).

    Args:
        config: from :func:`coroconf.load` or :func:`coroconf.loads`.

    Returns:
        The text, ending with a newline.
    """
    root = _Section("")
    for item in config.source_items:
        _place(root, item.key, str(item.value))
    out: list[str] = []
    _write(root, 0, out)
    return "\n".join(out) + "\n"
