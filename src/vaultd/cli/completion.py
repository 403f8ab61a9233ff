"""`vaultd completion SHELL`: the shell completion script, generated from the parser by shtab
so that it never falls behind the commands. shtab is imported only by this command."""

from __future__ import annotations

import argparse

from vaultd.cli.common import Command
from vaultd.cli.exits import EXIT_OK

SHELLS = ("bash", "zsh", "fish")

DESCRIPTION = """\
print the completion script for SHELL. Load it in the current shell with
`source <(vaultd completion bash)` (bash, zsh) or `vaultd completion fish | source`, or install
it: bash `vaultd completion bash > ~/.local/share/bash-completion/completions/vaultd`, zsh
`vaultd completion zsh > DIR/_vaultd` for a DIR on $fpath, fish `vaultd completion fish >
~/.config/fish/completions/vaultd.fish`."""


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    from vaultd.cli.parser import build_parser

    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return EXIT_OK


def _completion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")


COMMANDS = (
    Command(
        "completion",
        "print the shell completion script (bash, zsh, fish)",
        cmd_completion,
        _completion_args,
        DESCRIPTION,
    ),
)
