"""The file's shape: sections, items, comments, blanks, and syntax errors."""

from __future__ import annotations

import re

import pytest

import coroconf
from coroconf import ConfigSyntaxError
from coroconf._parser import RawItem, RawSection, parse_text

from .helpers import udpu


def test_items_sections_and_lines_are_kept_in_order():
    root = parse_text("a {\n  k: v\n  b {\n    x: 1\n  }\n}\n", "f")
    (section,) = root.children
    assert isinstance(section, RawSection) and (section.name, section.line) == ("a", 1)
    assert section.children[0] == RawItem(key="k", value="v", line=2)
    inner = section.children[1]
    assert isinstance(inner, RawSection) and inner.children == (RawItem("x", "1", 4),)


@pytest.mark.parametrize("line,key,value", [
    ("token: 3000", "token", "3000"),
    ("  \ttoken\t:\t 3000 \t", "token", "3000"),
    ("token:3000", "token", "3000"),
    ("token :: 3000", "token", ": 3000"),          # only the first colon splits
    ("ring0_addr: fe80::1", "ring0_addr", "fe80::1"),  # colons in the value stay
    ("name:", "name", ""),                           # an empty value is a value
    ("token:\u00a03000\u00a0", "token", "3000"),     # no-break spaces are blanks
    ("cluster_name: a # b", "cluster_name", "a # b"),  # no end-of-line comments
])
def test_item_forms(line, key, value):
    root = parse_text(f"s {{\n{line}\n}}\n", "f")
    assert root.children[0].children == (RawItem(key, value, 2),)


@pytest.mark.parametrize("opener", ["totem {", "totem{", "totem: {", "  totem   {  ", "totem:{"])
def test_section_openers(opener):
    root = parse_text(f"{opener}\n}}\n", "f")
    assert root.children[0].name == "totem"


def test_comments_blank_lines_and_crlf_are_ignored():
    text = "# top\r\n\r\n   # indented\r\ntotem {\r\n\t# inside\r\n\tversion: 2\r\n}\r\n"
    root = parse_text(text, "f")
    assert root.children[0].children == (RawItem("version", "2", 6),)


def test_a_file_without_final_newline_parses():
    assert parse_text("a {\nk: v\n}", "f").children[0].children == (RawItem("k", "v", 2),)


@pytest.mark.parametrize("text,message", [
    ("totem {\nversion: 2\n", "f:1: section 'totem' is never closed (a '}' is missing)"),
    ("totem {\n}\n}\n", "f:3: '}' closes no open section"),
    ("{\n}\n", "f:1: a section name is missing before '{'"),
    ("totem { version: 2 }\n", "f:1: unexpected text after '{' of section 'totem' "
                               "(put each key on its own line)"),
    ("totem {\n} x\n", "f:2: unexpected text before or after '}'"),
    ("totem {\n: 2\n}\n", "f:2: a key name is missing before ':'"),
    ("totem {\ntoken=3000\n}\n", "f:2: this line is not 'key: value', 'name {' or '}' "
                                 "(corosync.conf writes 'key: value', not 'key=value')"),
    ("totem {\ntoken 3000\n}\n", "f:2: this line is not 'key: value', 'name {' or '}' "
                                 "(a colon is missing after the key)"),
    ("totem {\njust words here\n}\n", "f:2: this line is not 'key: value', 'name {' or '}'"),
])
def test_syntax_errors(text, message):
    with pytest.raises(ConfigSyntaxError, match=rf"^{re.escape(message)}$") as caught:
        parse_text(text, "f")
    assert caught.value.filename == "f"
    assert caught.value.line == int(message.split(":")[1])


def test_syntax_error_through_loads_names_the_file():
    with pytest.raises(ConfigSyntaxError, match=r"^corosync\.conf:15: '\}' closes no open section$"):
        coroconf.loads(udpu() + "}\n", "corosync.conf")


def test_sections_given_twice_merge_and_a_repeated_key_warns():
    text = udpu("\ttoken: 5000\n") + "totem {\n\ttoken: 6000\n}\n"
    config = coroconf.loads(text, "corosync.conf")
    assert config.totem.token_base_ms == 6000
    assert config.warnings == (
        "corosync.conf:17: 'totem.token' is set again (first on line 4); the last value (6000) "
        "is used",)
