"""Lexer and parser: tokens keep file:line:column; comments, quotes, blocks and includes."""

from __future__ import annotations

from pathlib import Path

from vipkeeper.config import load_config, parse_text
from vipkeeper.config.diagnostics import Diagnostics
from vipkeeper.config.lexer import TokenKind, tokenize
from vipkeeper.config.parser import ParseContext, expand_braces, parse_text_tree


def words(text: str) -> list[tuple[str, int, int, bool]]:
    tokens = tokenize(text, "t.conf", Diagnostics())
    return [
        (token.value, token.location.line, token.location.column, token.quoted)
        for token in tokens
        if token.kind is TokenKind.WORD
    ]


def test_tokens_keep_line_and_column_and_comments_run_to_end_of_line() -> None:
    text = "global_defs {  # comment { here\n\trouter_id a!b\n}\n"
    assert words(text) == [
        ("global_defs", 1, 1, False),
        ("router_id", 2, 2, False),
        ("a", 2, 12, False),
    ]


def test_quoted_strings_keep_spaces_and_glue_to_adjacent_text() -> None:
    assert words('x "a b"c \'d # e\' "tab\\tend"\n') == [
        ("x", 1, 1, False),
        ("a bc", 1, 3, True),
        ("d # e", 1, 10, True),
        ("tab\tend", 1, 18, True),
    ]


def test_unterminated_quote_is_a_located_error() -> None:
    diagnostics = Diagnostics()
    tokenize('script "abc\n', "t.conf", diagnostics)
    (error,) = diagnostics.items
    assert (error.line, error.column) == (1, 8) and "unterminated" in error.message


def test_brace_on_the_next_line_opens_the_block_of_the_previous_keyword() -> None:
    context = ParseContext(diagnostics=Diagnostics())
    (statement,) = parse_text_tree("global_defs\n\n{\n router_id r1\n}\n", "t.conf", context)
    assert statement.name == "global_defs"
    assert statement.block is not None and statement.block[0].args[0].value == "r1"
    assert context.diagnostics.items == []


def test_unclosed_block_and_stray_brace_are_located_errors() -> None:
    result = parse_text("}\nvrrp_script s {\n script /bin/true\n", "t.conf")
    messages = [(item.line, item.column, item.message.split(":")[0]) for item in result.diagnostics]
    assert messages[0][:2] == (1, 1) and "does not close" in result.diagnostics[0].message
    assert (messages[1][0], messages[1][1]) == (2, 15)
    assert "never closed" in result.diagnostics[1].message


def test_deeply_nested_garbage_does_not_exhaust_the_stack() -> None:
    result = parse_text("a {" * 50_000 + "}" * 50_000)
    assert result.config is None
    assert result.diagnostics[0].message.startswith("a: unknown keyword")


def test_include_is_relative_to_the_including_file_and_supports_globs(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("vrrp_script a {\n script /bin/a\n}\n")
    (tmp_path / "conf.d" / "b.conf").write_text("vrrp_script b {\n script /bin/b\n}\n")
    (tmp_path / "main.conf").write_text("include conf.d/*.conf\n")
    result = load_config(str(tmp_path / "main.conf"))
    assert result.config is not None, result.diagnostics
    assert [script.name for script in result.config.vrrp_scripts] == ["a", "b"]
    assert result.config.vrrp_scripts[1].location.file == str(tmp_path / "conf.d" / "b.conf")


def test_include_inside_a_block_splices_its_lines_there(tmp_path: Path) -> None:
    (tmp_path / "vips").write_text("192.0.2.1\n192.0.2.2\n")
    (tmp_path / "main.conf").write_text(
        "vrrp_instance V {\n interface eth0\n virtual_router_id 3\n"
        " virtual_ipaddress {\n  include vips\n }\n}\n"
    )
    result = load_config(str(tmp_path / "main.conf"))
    assert result.config is not None, result.diagnostics
    vips = result.config.vrrp_instances[0].virtual_ipaddresses
    assert [(vip.address, vip.location.line) for vip in vips] == [
        ("192.0.2.1", 1),
        ("192.0.2.2", 2),
    ]


def test_missing_include_is_an_error_at_the_include_line(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("global_defs {\n}\ninclude nothere.conf\n")
    result = load_config(str(tmp_path / "main.conf"))
    assert result.config is None
    (error,) = result.diagnostics
    assert (error.file, error.line, error.column) == (str(tmp_path / "main.conf"), 3, 9)
    assert "does not exist" in error.message


def test_include_loop_is_detected_and_reported(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("include b.conf\n")
    (tmp_path / "b.conf").write_text("include a.conf\n")
    result = load_config(str(tmp_path / "a.conf"))
    assert result.config is None
    (error,) = result.diagnostics
    assert error.file == str(tmp_path / "b.conf") and error.line == 1
    assert "include loop" in error.message


def test_includer_may_match_nothing(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("includer conf.d/*.conf\n")
    result = load_config(str(tmp_path / "main.conf"))
    assert result.config is not None and result.diagnostics == []


def test_brace_expansion_follows_csh_rules() -> None:
    assert expand_braces("x/{a,b{1,2}}.conf") == ["x/a.conf", "x/b1.conf", "x/b2.conf"]
    assert expand_braces("plain{}.conf") == ["plain{}.conf"]


def test_missing_main_file_is_a_file_level_error(tmp_path: Path) -> None:
    result = load_config(str(tmp_path / "absent.conf"))
    assert result.config is None
    (error,) = result.diagnostics
    assert error.line == 0 and error.format().startswith(f"{tmp_path / 'absent.conf'}: error: ")


def test_invalid_utf8_is_located_and_the_rest_still_parsed(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_bytes(b"global_defs {\n router_id caf\xe9\n}\n")
    result = load_config(str(path))
    (error,) = result.diagnostics
    assert error.line == 2 and "UTF-8" in error.message
