"""The section tree to flat, typed cmap items, the way coroparse loads them.

corosync's parser turns the file into dotted keys: ``totem.token``,
``totem.interface.<linknumber>.bindnetaddr`` (an interface section is
numbered by its ``linknumber``, not by its position),
``nodelist.node.<position>.ring0_addr`` (nodes are numbered in file order),
``logging.logger_subsys.<SUBSYS>.debug``, ``uidgid.config.uid.<uid>``. A few
keys become integers (see the cmap types in :mod:`coroconf.schema`); the
rest are strings. This module does the same and, unlike corosync, refuses
keys and sections it does not know.
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass, field

from .errors import ConfigValueError
from ._parser import RawItem, RawSection
from ._values import convert_value, nearest
from .schema import (FREEFORM_SECTIONS, LEGACY_SECTIONS, MAX_RING_NUMBER, RING_ADDR, SECTIONS,
                     SUBSECTIONS, KeySpec, key_spec)

__all__ = ["SourceItem", "Flattened", "flatten"]


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One key the file set, as cmap holds it.

    Attributes:
        key: the dotted cmap key ("totem.interface.0.mcastport").
        cmap_type: "u32", "str", ... (see :data:`coroconf.schema.INTEGER_RANGES`).
        value: int for integer types, else str.
        line: where it was set (not part of equality: the same settings on
            other lines are the same configuration).
        file: the file it came from (corosync.conf or a uidgid.d file).
    """

    key: str
    cmap_type: str
    value: int | str
    line: int = field(compare=False, default=0)
    file: str = field(compare=False, default="")


@dataclass(slots=True)
class Flattened:
    """What :func:`flatten` found: the items in order, and warnings."""

    items: list[SourceItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: cmap key -> item, last one wins (as in cmap)
    by_key: dict[str, SourceItem] = field(default_factory=dict)

    def add(self, item: SourceItem, *, duplicates_warn: bool = True) -> None:
        previous = self.by_key.get(item.key)
        if previous is not None:
            self.items.remove(previous)
            if duplicates_warn:
                self.warnings.append(
                    f"{item.file}:{item.line}: '{item.key}' is set again (first on line "
                    f"{previous.line}); the last value ({item.value}) is used")
        self.items.append(item)
        self.by_key[item.key] = item


# key name -> the sections that have it, for "belongs in section 'quorum'"
_HOME: dict[str, list[str]] = {}
for _path, _keys in SECTIONS.items():
    for _key in _keys:
        _HOME.setdefault(_key, []).append(_path)


def _unknown_key(item: RawItem, section: str, filename: str) -> ConfigValueError:
    keys = SECTIONS.get(section, {})
    where = f"in section '{section}'" if section else "outside any section"
    ring = RING_ADDR.fullmatch(item.key)
    if section == "nodelist.node" and ring:
        hint = f" (link numbers go from 0 to {MAX_RING_NUMBER})"
    elif item.key in SUBSECTIONS.get(section, ()):
        hint = f" ('{item.key}' is a section: write '{item.key} {{')"
    elif item.key in _HOME and section not in _HOME[item.key]:
        hint = f" ('{item.key}' belongs in section '{_HOME[item.key][0]}')"
    else:
        guess = nearest(item.key, [key for key, spec in keys.items() if not spec.legacy])
        hint = f" (did you mean '{guess}'?)" if guess else ""
    return ConfigValueError(f"unknown key '{item.key}' {where}{hint}", filename=filename,
                            line=item.line, key=f"{section}.{item.key}".lstrip("."))


def _unknown_section(child: RawSection, section: str, filename: str) -> ConfigValueError:
    allowed = SUBSECTIONS.get(section, ())
    where = f" in section '{section}'" if section else ""
    guess = nearest(child.name, allowed)
    if guess:
        hint = f" (did you mean '{guess}'?)"
    elif allowed:
        hint = f" (allowed here: {', '.join(allowed)})"
    else:
        hint = f" (section '{section}' has no subsections)"
    return ConfigValueError(f"unknown section '{child.name}'{where}{hint}",
                            filename=filename, line=child.line)


class _Flattener:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.out = Flattened()
        self.node_count = 0

    def _read(self, item: RawItem, section: str) -> tuple[KeySpec, int | str]:
        spec = key_spec(section, item.key)
        if spec is None:
            raise _unknown_key(item, section, self.filename)
        if spec.legacy:
            self.out.warnings.append(f"{self.filename}:{item.line}: {spec.legacy}")
        value = convert_value(spec, item.value, item.key, section, filename=self.filename,
                              line=item.line)
        return spec, value

    def _emit(self, key: str, spec_type: str, value: int | str, line: int) -> None:
        self.out.add(SourceItem(key, spec_type, value, line, self.filename))

    def section(self, node: RawSection, path: str) -> None:
        """Flatten the children of ``node``, whose dotted path is ``path``."""
        for child in node.children:
            if isinstance(child, RawItem):
                if path == "uidgid":
                    self._uidgid(child)
                    continue
                spec, value = self._read(child, path)
                self._emit(f"{path}.{child.key}", spec.cmap_type, value, child.line)
                continue
            self._subsection(child, path)

    def _subsection(self, child: RawSection, path: str) -> None:
        sub = f"{path}.{child.name}" if path else child.name
        if sub in LEGACY_SECTIONS:
            self.out.warnings.append(f"{self.filename}:{child.line}: {LEGACY_SECTIONS[sub]}")
            return
        if child.name not in SUBSECTIONS.get(path, ()):
            raise _unknown_section(child, path, self.filename)
        if sub == "totem.interface":
            self._interface(child)
        elif sub == "nodelist.node":
            self._node(child)
        elif sub == "logging.logger_subsys":
            self._logger_subsys(child)
        elif sub in FREEFORM_SECTIONS:
            for grandchild in child.children:
                if isinstance(grandchild, RawSection):
                    raise _unknown_section(grandchild, sub, self.filename)
                self._emit(f"{sub}.{grandchild.key}", "str", grandchild.value, grandchild.line)
        else:
            self.section(child, sub)

    def _interface(self, node: RawSection) -> None:
        link = 0
        pending: list[tuple[RawItem, KeySpec, int | str]] = []
        members: list[tuple[RawItem, str]] = []
        for child in node.children:
            if isinstance(child, RawSection):
                if child.name != "member":
                    raise _unknown_section(child, "totem.interface", self.filename)
                for grandchild in child.children:
                    if isinstance(grandchild, RawSection):
                        raise _unknown_section(grandchild, "totem.interface.member",
                                               self.filename)
                    _spec, value = self._read(grandchild, "totem.interface.member")
                    members.append((grandchild, str(value)))
                continue
            spec, value = self._read(child, "totem.interface")
            if (spec.alias or child.key) == "linknumber":
                link = int(value)  # coroparse keeps it out of cmap: it is the index
                continue
            pending.append((child, spec, value))
        for child, spec, value in pending:
            self._emit(f"totem.interface.{link}.{child.key}", spec.cmap_type, value, child.line)
        for index, (child, value) in enumerate(members):
            self._emit(f"totem.interface.{link}.member.{index}", "str", value, child.line)

    def _node(self, node: RawSection) -> None:
        position = self.node_count
        self.node_count += 1
        for child in node.children:
            if isinstance(child, RawSection):
                raise _unknown_section(child, "nodelist.node", self.filename)
            spec, value = self._read(child, "nodelist.node")
            self._emit(f"nodelist.node.{position}.{child.key}", spec.cmap_type, value,
                       child.line)

    def _logger_subsys(self, node: RawSection) -> None:
        read: list[tuple[RawItem, KeySpec, int | str]] = []
        subsys = None
        for child in node.children:
            if isinstance(child, RawSection):
                raise _unknown_section(child, "logging.logger_subsys", self.filename)
            spec, value = self._read(child, "logging.logger_subsys")
            if child.key == "subsys":
                subsys = str(value)
            else:
                read.append((child, spec, value))
        if not subsys:
            raise ConfigValueError("a logger_subsys section needs a 'subsys' key naming the "
                                   "subsystem (for example 'subsys: QUORUM')",
                                   filename=self.filename, line=node.line)
        prefix = f"logging.logger_subsys.{subsys}"
        for child, spec, value in read:
            self._emit(f"{prefix}.{child.key}", spec.cmap_type, value, child.line)
        self._emit(f"{prefix}.subsys", "str", subsys, node.line)

    def _uidgid(self, item: RawItem) -> None:
        if item.key not in ("uid", "gid"):
            raise ConfigValueError(
                f"unknown key '{item.key}' in section 'uidgid' (only uid and gid are allowed)",
                filename=self.filename, line=item.line, key=f"uidgid.{item.key}")
        number = _resolve_id(item, self.filename)
        self.out.add(SourceItem(f"uidgid.config.{item.key}.{number}", "u8", 1, item.line,
                                self.filename), duplicates_warn=False)


def _resolve_id(item: RawItem, filename: str) -> int:
    """A uid/gid number from a number or a user/group name, as corosync does."""
    if item.value.isdigit() and int(item.value) <= 2**32 - 1:
        return int(item.value)
    try:
        if item.key == "uid":
            return pwd.getpwnam(item.value).pw_uid
        return grp.getgrnam(item.value).gr_gid
    except KeyError:
        kind, database = ("user", "passwd") if item.key == "uid" else ("group", "group")
        raise ConfigValueError(f"{kind} '{item.value}' in section 'uidgid' is not in the "
                               f"{database} database", filename=filename, line=item.line,
                               key=f"uidgid.{item.key}") from None


def flatten(root: RawSection, filename: str, into: Flattened | None = None,
            *, uidgid_only: bool = False) -> Flattened:
    """Turn a parsed file into cmap items.

    Args:
        root: from :func:`coroconf._parser.parse_text`.
        filename: for messages.
        into: add to this result (the main file, then uidgid.d files).
        uidgid_only: the file is a uidgid.d file: only uidgid sections.

    Returns:
        The items in the order cmap receives them, and warnings.

    Raises:
        ConfigValueError: an unknown key or section, or a bad value.
    """
    worker = _Flattener(filename)
    if into is not None:
        worker.out = into
    if uidgid_only:
        for child in root.children:
            if not isinstance(child, RawSection) or child.name != "uidgid":
                line = child.line
                raise ConfigValueError("a uidgid.d file may only hold uidgid sections",
                                       filename=filename, line=line)
    worker.section(root, "")
    return worker.out
