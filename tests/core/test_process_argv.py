"""A credential_process command line is run as botocore runs it: the same argv, checked by
running one program under botocore's own ProcessProvider and under vaultd."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from botocore.credentials import ProcessProvider

from vaultd.core.mfa import SourceFailed
from vaultd.core.process import credentials_from_process

# Records its argv, then prints long-lived keys as Version 1 JSON.
SCRIPT = """\
import json, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps(sys.argv[2:]) + "\\n")
keys = {"AccessKeyId": "AKIAPROCESSARGV00001", "SecretAccessKey": "s" * 40}
print(json.dumps({"Version": 1, **keys}))
"""


def test_the_program_gets_the_argv_botocore_gives_it(tmp_path: Path) -> None:
    # A path with a space, `$`, `~`, `#`, a glob and quotes: before, vaultd ran the line with
    # /bin/sh -c, which expanded `$db` and `~` in the daemon's environment, globbed `*`
    # and dropped `# trailing` as a comment, where the AWS CLI passes them all as written.
    folder = tmp_path / "my tools"
    folder.mkdir()
    script, seen = folder / "cp.py", tmp_path / "argv"
    script.write_text(SCRIPT)
    (tmp_path / "x.txt").touch()
    command = (
        f'{sys.executable} "{script}" {seen} --name "prod$db" --path ~/x \'a b\' '
        f"{tmp_path}/*.txt --x=y # trailing"
    )
    botocore = ProcessProvider("p", lambda: {"profiles": {"p": {"credential_process": command}}})
    assert botocore.load().access_key == "AKIAPROCESSARGV00001"
    keys = credentials_from_process(command, 0.0)
    assert keys.access_key_id == "AKIAPROCESSARGV00001"
    theirs, ours = (json.loads(line) for line in seen.read_text().splitlines())
    expected = ["--name", "prod$db", "--path", "~/x", "a b", f"{tmp_path}/*.txt", "--x=y"]
    assert ours == theirs == [*expected, "#", "trailing"]


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ("prog 'unclosed", "credential_process is not a command line: No closing quotation"),
        ("   ", "credential_process names no program"),
        ("no-such-program-here --x", "credential_process: no-such-program-here is not installed"),
        # Before, subprocess's ValueError was an internal error with a traceback in the log.
        ("echo a\x00b", "credential_process could not run: its command line holds a NUL byte"),
    ],
)
def test_a_command_line_that_cannot_run_is_one_clear_line(command: str, said: str) -> None:
    with pytest.raises(SourceFailed) as raised:
        credentials_from_process(command, 0.0)
    assert str(raised.value) == said
