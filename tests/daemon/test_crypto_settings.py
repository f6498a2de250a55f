"""totem.crypto_* at start: the key found (keyfile, inline key), netmtu made
room for the seal, clear errors when the key is missing; ``coro keygen``."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clients.cli import main as coro
from tests.daemon.daemon_helpers import REPO, free_udp_port, write_config
from totemd.crypto import overhead_bytes, write_key
from totemd.settings import StartupError, resolve_settings


def _config(tmp_path: Path, crypto: str) -> Path:
    path = write_config(tmp_path / "corosync.conf", 5405, {1: "127.0.0.1", 2: "127.0.0.2"})
    path.write_text(path.read_text().replace("    transport: udpu\n", f"    transport: udpu\n{crypto}"))
    return path


def test_the_keyfile_is_read_and_frames_shrink_by_the_seal(tmp_path):
    key = tmp_path / "authkey"
    write_key(str(key))
    plain = resolve_settings(str(_config(tmp_path, "")), node_id=1)
    assert plain.crypto is None
    sealed = resolve_settings(str(_config(tmp_path, f"    crypto_cipher: aes128\n    crypto_hash: sha1\n"
                                                    f"    keyfile: {key}\n")), node_id=1)
    assert (sealed.crypto.cipher, sealed.crypto.hash, sealed.crypto.key) == ("aes128", "sha1",
                                                                              key.read_bytes())
    assert sealed.params.netmtu == plain.params.netmtu - overhead_bytes("aes128", "sha1") == 1500 - 36
    assert sealed.params.frame_payload_max == plain.params.frame_payload_max - 36
    signed = resolve_settings(str(_config(tmp_path, f"    crypto_hash: sha512\n    keyfile: {key}\n")),
                              node_id=1)
    assert signed.params.netmtu == 1500 - 20 - 64


def test_an_inline_key_is_used_as_its_bytes(tmp_path):
    inline = "k3y-" * 40
    settings = resolve_settings(str(_config(tmp_path, f"    secauth: on\n    key: {inline}\n")), node_id=1)
    assert settings.crypto.key == inline.encode() and settings.crypto.cipher == "aes256"


def test_a_missing_key_is_a_start_up_error_that_says_what_to_do(tmp_path):
    config = _config(tmp_path, f"    secauth: on\n    keyfile: {tmp_path / 'nope'}\n")
    with pytest.raises(StartupError, match=r"crypto_cipher aes256, crypto_hash sha256: key file .*nope "
                                           r"does not exist \(create it with 'coro keygen -k"):
        resolve_settings(str(config), node_id=1)
    port = free_udp_port(["127.0.0.1"])
    config.write_text(config.read_text().replace("mcastport: 5405", f"mcastport: {port}"))
    result = subprocess.run([sys.executable, "-m", "totemd.process", "-c", str(config), "--node-id", "1",
                             "--run-dir", str(tmp_path / "run"), "--state-dir", str(tmp_path / "state")],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "does not exist (create it with 'coro keygen" in result.stderr


def test_coro_keygen_writes_a_private_key_of_the_asked_size(tmp_path, capsys):
    path = tmp_path / "authkey"
    assert coro(["keygen", "-k", str(path)]) == 0
    assert capsys.readouterr().out == f"Writing corosync key to {path}.\n"
    assert len(path.read_bytes()) == 256 and stat.S_IMODE(path.stat().st_mode) == 0o400
    assert coro(["keygen", "-k", str(path), "-s", "512", "-l"]) == 0  # corosync-keygen's flags
    assert len(path.read_bytes()) == 512
    assert coro(["keygen", "-r", "--key-file", str(path)]) == 0
    assert coro(["keygen", "-k", str(path), "-s", "64"]) == 2
    assert "a key is 128..4096 bytes, not 64" in capsys.readouterr().err
    assert coro(["keygen", "-k", str(tmp_path / "no" / "dir")]) == 1
    assert "cannot write key file" in capsys.readouterr().err
