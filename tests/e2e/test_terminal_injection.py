"""A profile name that carries terminal escape sequences (botocore accepts
`[profile \\x1b]0;pwned\\x07\\x1b[2J]`) is shown escaped by every command and in the daemon's
log: it never retitles or clears the user's terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.e2e.harness import Daemon, run_vaultd

EVIL = "\x1b]0;pwned\x07\x1b[2J"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J"
PROCESS = (
    "import json; print(json.dumps({'Version': 1, 'AccessKeyId': 'ASIAPROCESS000000001', "
    "'SecretAccessKey': 's' * 40, 'SessionToken': 't' * 80, "
    "'Expiration': '2099-01-01T00:00:00Z'}))"
)


def test_an_escape_sequence_in_a_profile_name_is_shown_escaped(
    daemon: Daemon, aws_config: Path, isolated: Path
) -> None:
    script = isolated / "process.py"
    script.write_text(PROCESS)
    with aws_config.open("a") as fh:
        fh.write(f"\n[profile {EVIL}]\ncredential_process = {sys.executable} {script}\n")
    daemon.start()
    outputs = {}
    for words in (("switch", EVIL), ("status",), ("list",)):
        done = run_vaultd(*words)
        assert done.returncode == 0, done.stderr
        outputs[words[0]] = done.stdout
    assert SHOWN in outputs["switch"] and SHOWN in outputs["status"] and SHOWN in outputs["list"]
    assert json.loads(run_vaultd("status", "--json").stdout)["active"] == EVIL  # data unchanged
    for text in (*outputs.values(), daemon.log()):
        assert "\x1b" not in text and "\x07" not in text
    assert f"switched to {SHOWN}" in daemon.log()


def test_doctor_and_lists_problem_lines_show_such_a_name_escaped(
    aws_config: Path, isolated: Path
) -> None:
    """The name reaches doctor's findings and `vaultd list`'s problem lines too: a role
    profile built on a keyless source with that name, and an sso-session named so."""
    with aws_config.open("a") as fh:
        fh.write(
            f"\n[profile {EVIL}]\nregion = us-east-1\n"
            f"\n[profile built-on-evil]\nrole_arn = arn:aws:iam::222233334444:role/R\n"
            f"source_profile = {EVIL}\n"
            f"\n[profile {EVIL}-dur]\nrole_arn = arn:aws:iam::222233334444:role/R\n"
            f"source_profile = {EVIL}\nduration_seconds = soon\n"
            f"\n[sso-session {EVIL}]\nsso_start_url = https://x.awsapps.com/start\n"
            "sso_region = us-east-1\n"
            f"\n[profile evil-sso]\nsso_session = {EVIL}\nsso_account_id = 222233334444\n"
            "sso_role_name = R\n"
        )
    doctor, listed = run_vaultd("doctor"), run_vaultd("list")
    assert SHOWN in doctor.stdout  # the keys finding and the sign-in finding name it
    assert f"! {SHOWN}-dur: " in listed.stdout
    for text in (doctor.stdout, doctor.stderr, listed.stdout, listed.stderr):
        assert "\x1b" not in text and "\x07" not in text
