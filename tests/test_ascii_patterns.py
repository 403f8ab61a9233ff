"""Pattern checks accept ASCII only and match whole values (the tester's finding: Unicode
digits passed `\\d`, and `^...$` with `match` let a trailing newline through).

AWS's own patterns (`[0-9]{6}` for a TokenCode, `\\d{12}` account ids in ARNs) mean ASCII;
Python's `\\d` also matches Arabic-Indic and fullwidth digits, and `$` matches before a
final newline. The rule for the whole kind is the scan at the bottom: no pattern in src/
uses `\\d`/`\\w` without re.ASCII, ends in `$`, or is applied with `.match`.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from vaultd import mfa_code
from vaultd.core import config, mfa, rules
from vaultd.errors import ConfigError

# Arabic-Indic digits: str.isdigit() is True, AWS refuses them.
ARABIC = "\u0662" * 4 + "\u0663" * 4 + "\u0664" * 4
SRC = Path(__file__).resolve().parents[1] / "src" / "vaultd"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("role_arn", f"arn:aws:iam::{ARABIC}:role/DeveloperRole"),
        ("mfa_serial", f"arn:aws:iam::{ARABIC}:mfa/elmerfudd"),
        ("duration_seconds", "\u0663\u0666\u0660\u0660"),
        ("duration_seconds", "\uff13\uff16\uff10\uff10"),  # fullwidth
        ("role_session_name", "vaultd-user\n"),
    ],
)
def test_non_ascii_digits_and_newlines_are_refused(key: str, value: str) -> None:
    assert rules.problem(key, value) is not None


def test_a_unicode_duration_is_named_like_any_wrong_value() -> None:
    text = "[profile master]\nduration_seconds = \u0663\u0666\u0660\u0660\n"
    profiles = config.parse_profiles(text, "cfg")
    with pytest.raises(ConfigError) as info:
        profiles["master"]
    assert info.value.message.startswith("cfg: profile 'master': duration_seconds must be")


def test_ascii_values_are_still_accepted() -> None:
    assert rules.problem("role_arn", "arn:aws:iam::222233334444:role/DeveloperRole") is None
    assert rules.problem("duration_seconds", "3600") is None


@pytest.mark.parametrize(
    "text", ["\u0661\u0662\u0663\u0664\u0665\u0666", "123456\n", "12345", "1234567", " 123456"]
)
def test_only_six_ascii_digits_are_an_mfa_code(text: str) -> None:
    assert not mfa_code.is_mfa_code(text)


def test_an_mfa_code_is_six_ascii_digits() -> None:
    assert mfa_code.is_mfa_code("123456")


def test_a_tool_printing_unicode_digits_gives_no_code() -> None:
    with pytest.raises(mfa.SourceFailed):
        mfa.mfa_code_from_process(
            "x", runner=lambda *a, **k: _done("\u0661\u0662\u0663\u0664\u0665\u0666\n")
        )
    assert mfa.mfa_code_from_process("x", runner=lambda *a, **k: _done("123456\n")) == "123456"


def _done(stdout: str) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["x"], 0, stdout=stdout, stderr="")


def _pattern_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Every text pattern given to `re.<fn>(...)`, with its line (f-strings: literal parts)."""
    found = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.args
        ):
            continue
        if any(isinstance(a, ast.Attribute) and a.attr == "ASCII" for a in ast.walk(node)):
            continue
        first = node.args[0]
        parts = first.values if isinstance(first, ast.JoinedStr) else [first]
        text = "".join(
            p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)
        )
        found.append((node.lineno, text))
    return found


def _match_calls(tree: ast.AST) -> list[int]:
    """Lines calling `re.match` or `<PATTERN>.match` (a prefix check, not a whole one)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "match"
        and isinstance(node.func.value, ast.Name)
        and (node.func.value.id == "re" or node.func.value.id.lstrip("_").isupper())
    ]


def test_every_pattern_in_src_is_ascii_and_whole() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(SRC)
        for line, text in _pattern_literals(tree):
            if "\\d" in text or "\\w" in text:
                wrong.append(f"{where}:{line}: \\d or \\w without re.ASCII")
            if text.endswith("$"):
                wrong.append(f"{where}:{line}: ends in $ (use fullmatch)")
        wrong += [f"{where}:{line}: .match (use fullmatch)" for line in _match_calls(tree)]
    assert wrong == []
