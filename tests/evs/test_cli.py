"""``coro check-evs``: exit codes, output forms, options, unreadable input."""

from __future__ import annotations

import argparse
import json

import pytest

from totemd.evs import InputError, check_directory
from totemd.evs import cli


def main(argv: list[str]) -> int:
    """``coro check-evs ...`` without building the other subcommands (their
    modules belong to other parts and may be mid-change)."""
    assert argv[0] == "check-evs"
    parser = argparse.ArgumentParser(prog="coro check-evs")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv[1:]))

from .histories import R4, History, valid_history


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["check-evs", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_valid_directory_exits_zero_and_lists_every_rule(tmp_path, capsys) -> None:
    directory = valid_history().write(tmp_path / "logs")
    status, out, err = _run(capsys, str(directory), "--nodes", "1,2,3")
    assert status == 0, out + err
    for rule in ("S1", "S9", "S16", "L1", "L3"):
        assert any(line.startswith(rule + " ") and "OK" in line for line in out.splitlines())
    assert out.rstrip().endswith("RESULT: OK")


def test_violation_exits_one_and_prints_the_witness(tmp_path, capsys) -> None:
    h = History()
    h.node(1).reg(R4, [1, 2]).stop()
    h.node(2).reg(R4, [2]).stop()
    status, out, _ = _run(capsys, str(h.write(tmp_path / "logs")))
    assert status == 1
    assert "S5   VIOLATED (1)" in out
    assert "witness: REG [1,4] has members [1,2] at n1.1 but [2] at n2.1" in out


def test_json_output(tmp_path, capsys) -> None:
    h = History()
    n1 = h.node(1).reg(R4, [1])
    n1.submit()
    n1.stop()
    status, out, _ = _run(capsys, str(h.write(tmp_path / "logs")), "--json")
    assert status == 1
    report = json.loads(out)
    assert report["ok"] is False
    s12 = next(r for r in report["results"] if r["rule"] == "S12")
    assert s12["ok"] is False and "1.1.1" in s12["witnesses"][0]


def test_nodes_option_feeds_s16(tmp_path, capsys) -> None:
    directory = valid_history().write(tmp_path / "logs")
    status, out, _ = _run(capsys, str(directory), "--nodes", "1,2")
    assert status == 1 and "S16  VIOLATED" in out


def test_quiet_window_from_the_command_line(tmp_path, capsys) -> None:
    h = History()
    h.node(1).reg((1, 8), [1])
    h.node(2).reg((2, 8), [2])
    h.node(1).stop()
    h.node(2).stop()
    directory = h.write(tmp_path / "logs")
    status, out, _ = _run(capsys, str(directory))
    assert status == 0 and "not evaluated" in out
    status, out, _ = _run(capsys, str(directory), "--quiet-from", "2500")
    assert status == 1 and "L1   VIOLATED" in out
    status, _, err = _run(capsys, str(directory), "--quiet-from", "9000", "--quiet-until", "10")
    assert status == 2 and "bad quiet window" in err


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ('{"node":1,"inc":1,"t":1,"ev":"conf","kind":"REG","id":[1,4],"members":[1]}\nnot json\n{}\n',
         2, "not JSON"),
        ('{"node":1,"inc":1,"t":1,"ev":"conf","kind":"REG","id":[1,4]}\n', 1, "'members'"),
        ('{"node":1,"inc":1,"t":1,"ev":"deliver"}\n', 1, "'mid'"),
        ('{"node":2,"inc":1,"t":1,"ev":"stop"}\n', 1, "in the log of n1.1"),
        ('{"node":1,"inc":1,"t":1,"ev":"bogus"}\n', 1, "unknown event"),
        ('{"node":1,"inc":1,"t":1,"ev":"stop"}\n{"node":1,"inc":1,"t":2,"ev":"stop"}\n', 2,
         "after the incarnation ended"),
        ('[1,2]\n', 1, "JSON object"),
        ('{"node":1,"inc":1,"t":"x","ev":"stop"}\n', 1, "'t' must be an integer"),
    ],
)
def test_unreadable_input_exits_two_naming_file_and_line(tmp_path, capsys, content, line,
                                                         reason) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "n1.1.jsonl").write_text(content)
    status, out, err = _run(capsys, str(directory))
    assert status == 2 and out == ""
    assert f"n1.1.jsonl:{line}:" in err and reason in err


def test_missing_or_empty_directory_exits_two(tmp_path, capsys) -> None:
    status, _, err = _run(capsys, str(tmp_path / "absent"))
    assert status == 2 and "not a directory" in err
    (tmp_path / "empty").mkdir()
    status, _, err = _run(capsys, str(tmp_path / "empty"))
    assert status == 2 and "no n<node>.<inc>.jsonl files" in err


def test_torn_last_line_of_a_killed_process_is_ignored_with_a_note(tmp_path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "n1.1.jsonl").write_text(
        '{"node":1,"inc":1,"t":1,"ev":"conf","kind":"REG","id":[1,4],"members":[1]}\n'
        '{"node":1,"inc":1,"t":2,"ev":"sub')
    report = check_directory(directory)
    assert report.ok
    assert any("torn last line" in note for note in report.notes)
    # The same damage in the middle of a file is an error.
    (directory / "n1.1.jsonl").write_text('{"node":1,"inc":1,"t":2,"ev":"sub\n{}\n')
    with pytest.raises(InputError, match=r"n1\.1\.jsonl:1: not JSON"):
        check_directory(directory)


def test_bad_nodes_option_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check-evs", str(tmp_path), "--nodes", "a,b"])
    assert exit_info.value.code == 2
    assert "expected node ids" in capsys.readouterr().err
