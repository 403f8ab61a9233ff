"""A command's words read without argparse, from the command's own declaration.

`vaultd status`, `switch` and `mfa` run many times a day, and argparse with what it loads
while it builds a parser (gettext and locale for its messages, shutil for the terminal width)
was a third of their start-up (issue 14). Their arguments are still declared once, by the
group's function that adds them to a parser: here that function is handed a `Recorder`,
which notes each argument, and `parse` reads only the plain forms: exact option names,
`--option VALUE`, and positionals. Anything else (help, an abbreviation,
`--option=VALUE`, a word or value starting with `-` other than `-` itself, a word missing or
left over, a value the argument's type refuses, a kind of argument not noted here) returns
None, and argparse reads the words as before, with its own messages.
tests/cli/test_quick.py checks that whatever this reads, argparse reads the same.
"""

from __future__ import annotations

from vaultd.cli.common import Command

# The type checker sees the namespace argparse makes; at run time a SimpleNamespace holds the
# same attributes, which is all a command's handler reads (argparse itself is not loaded).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Sequence
    from typing import Any
else:
    from types import SimpleNamespace as Namespace

# The add_argument keywords whose meaning `Recorder` reproduces; any other makes it unreadable.
KNOWN = frozenset({"action", "default", "dest", "help", "metavar", "nargs", "type"})


class _Argument:
    __slots__ = ("default", "dest", "flag", "required", "type")

    def __init__(self, dest: str, spec: dict[str, Any]) -> None:
        self.dest = dest
        self.flag = spec.get("action") == "store_true"
        self.required = spec.get("nargs") is None
        self.type = spec.get("type")
        self.default = spec.get("default", False if self.flag else None)


class Recorder:
    """Stands in for an argparse parser while a command adds its arguments: notes positionals
    (at most one; nargs None or `?`) and options (`store`, `store_true`), as argparse would
    name and default them. Anything else sets `readable` to False."""

    def __init__(self) -> None:
        self.options: dict[str, _Argument] = {}
        self.positionals: list[_Argument] = []
        self.readable = True

    def add_argument(self, *names: str, **spec: Any) -> None:
        """argparse.ArgumentParser.add_argument, for the kinds of argument listed above."""
        action = spec.get("action", "store")
        string_default = isinstance(spec.get("default"), str) and "type" in spec
        if (
            not spec.keys() <= KNOWN
            or action not in ("store", "store_true")
            or spec.get("nargs") not in (None, "?")
            or string_default  # argparse would pass it through `type`
        ):
            self.readable = False
            return
        if not names[0].startswith("-"):
            if len(names) != 1 or action != "store" or "dest" in spec or self.positionals:
                self.readable = False
                return
            self.positionals.append(_Argument(names[0], spec))
            return
        if spec.get("nargs") is not None:  # an option with `?` has argparse's `const` rules
            self.readable = False
            return
        # argparse's dest: the first long option (else the first), dashes made underscores.
        long = next((n for n in names if n.startswith("--")), names[0])
        argument = _Argument(spec.get("dest") or long.lstrip("-").replace("-", "_"), spec)
        self.options.update((name, argument) for name in names)

    def read(self, words: Sequence[str]) -> dict[str, Any] | None:
        """Each argument's value for `words` (the command's words after its name), or None
        when they are not in the plain forms this module reads."""
        arguments = [*self.positionals, *self.options.values()]
        values = {a.dest: a.default for a in arguments}
        given: list[str] = []
        at = 0
        while at < len(words):
            word = words[at]
            if not word.startswith("-") or word == "-":
                given.append(word)
                at += 1
                continue
            option = self.options.get(word)
            if option is None:
                return None
            if option.flag:
                values[option.dest] = True
                at += 1
                continue
            if at + 1 == len(words) or (words[at + 1].startswith("-") and words[at + 1] != "-"):
                return None
            found = _converted(option, words[at + 1])
            if found is None:
                return None
            values[option.dest] = found[0]
            at += 2
        if len(given) > len(self.positionals):
            return None
        for positional, word in zip(self.positionals, given, strict=False):
            found = _converted(positional, word)
            if found is None:
                return None
            values[positional.dest] = found[0]
        if any(p.required for p in self.positionals[len(given) :]):
            return None
        return values


def _converted(argument: _Argument, word: str) -> tuple[object] | None:
    """(value,) as the argument's type makes it from `word`, or None when the type refuses."""
    if argument.type is None:
        return (word,)
    try:
        return (argument.type(word),)
    except Exception:
        return None


def parse(command: Command, words: Sequence[str]) -> Namespace | None:
    """The namespace argparse would make for `vaultd NAME WORDS` (with `command` and `func`
    set as its subparser sets them), or None when argparse must read the words."""
    recorder = Recorder()
    if command.arguments is not None:
        try:
            command.arguments(recorder)  # type: ignore[arg-type]  # it only calls add_argument
        except AttributeError:  # the declaration used more of argparse than add_argument
            return None
    values = recorder.read(words) if recorder.readable else None
    if values is None:
        return None
    return Namespace(command=command.name, func=command.handler, **values)
