"""load(): reading files, uidgid.d next to the file, and read errors."""

from __future__ import annotations

import re

import pytest

import coroconf

from .helpers import udpu


def test_load_reads_uidgid_d_next_to_the_file(tmp_path):
    (tmp_path / "corosync.conf").write_text(udpu() + "uidgid {\n\tuid: 0\n}\n")
    (tmp_path / "uidgid.d").mkdir()
    (tmp_path / "uidgid.d" / "pacemaker").write_text("uidgid {\n\tuid: 189\n\tgid: 189\n}\n")
    (tmp_path / "uidgid.d" / "subdir").mkdir()  # not a regular file: skipped, as corosync does
    config = coroconf.load(tmp_path / "corosync.conf")
    assert (config.uidgid.uids, config.uidgid.gids) == ((0, 189), (189,))
    keys = [key for key, _kind, _value in coroconf.to_cmap_items(config)]
    assert keys[-3:] == ["uidgid.config.uid.0", "uidgid.config.uid.189", "uidgid.config.gid.189"]


def test_uidgid_d_files_may_only_hold_uidgid(tmp_path):
    (tmp_path / "corosync.conf").write_text(udpu())
    (tmp_path / "uidgid.d").mkdir()
    bad = tmp_path / "uidgid.d" / "bad"
    bad.write_text("totem {\n\ttoken: 1\n}\n")
    with pytest.raises(coroconf.ConfigValueError,
                       match=rf"^{re.escape(str(bad))}:1: a uidgid.d file may only hold uidgid "
                             r"sections$"):
        coroconf.load(tmp_path / "corosync.conf")


def test_unreadable_and_undecodable_files(tmp_path):
    with pytest.raises(coroconf.ConfigError, match=r"^.*missing\.conf: cannot read the file: "
                                                   r"No such file or directory$"):
        coroconf.load(tmp_path / "missing.conf")
    binary = tmp_path / "binary.conf"
    binary.write_bytes(b"totem {\n\tcluster_name: \xff\n}\n")
    with pytest.raises(coroconf.ConfigError, match=r"^.*binary\.conf: the file is not UTF-8 text "
                                                   r"\(byte 23\)$"):
        coroconf.load(binary)


def test_errors_carry_file_line_and_key(tmp_path):
    path = tmp_path / "corosync.conf"
    path.write_text(udpu("\tjoin: 5\n"))
    with pytest.raises(coroconf.ConfigConsistencyError) as caught:
        coroconf.load(path)
    error = caught.value
    assert (error.filename, error.line, error.key) == (str(path), 4, "totem.join")
    assert error.reason == "join (5 ms) must be at least 30 ms"
    assert isinstance(error, coroconf.ConfigError)
