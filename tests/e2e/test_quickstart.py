"""The README's "Quick start with a real account", as written, against moto: its example
config (read from README.md, so the two cannot drift), then its last lines verbatim in a new
bash with no region variables, ending in the AWS CLI's assumed-role/DeveloperRole."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import Daemon, run_vaultd
from vaultd.demo import DEMO_CODE, seed_accounts

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start_blocks() -> tuple[str, str]:
    """The config (```ini) and the commands (```sh) of the README's quick start."""
    text = README.read_text()
    section = text.split("## Quick start with a real account", 1)[1].split("\n## ", 1)[0]
    ini = re.search(r"```ini\n(.*?)```", section, re.DOTALL)
    sh = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert ini is not None and sh is not None, "the quick start lost its config or commands"
    return ini.group(1), sh.group(1)


def test_the_quick_start_works_as_written(moto: str, daemon: Daemon, isolated: Path) -> None:
    config, commands = quick_start_blocks()
    assert config.startswith("# ~/.aws/config\n")
    home = isolated / "home"
    (home / ".aws" / "config").write_text(config)

    # `vaultd add identity`, `vaultd serve &` and `vaultd switch master` as the README runs
    # them, with the key and the code given without a terminal.
    key_id, secret = seed_accounts(moto)
    added = run_vaultd("add", "identity", "--stdin", stdin=f"{key_id}\n{secret}\n")
    assert added.returncode == 0, added.stderr
    daemon.start()
    switched = run_vaultd("switch", "master", "--mfa", DEMO_CODE)
    assert switched.returncode == 0, switched.stderr

    # The rest verbatim, in a new shell: from `eval "$(vaultd env)"` on.
    lines = commands.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('eval "$(vaultd env)"'))
    script = "\n".join(lines[start:]) + "\n"
    assert script.rstrip().splitlines()[-1].startswith("aws sts get-caller-identity")
    listen = daemon.endpoint.removeprefix("http://").rstrip("/")
    shell = {
        "HOME": str(home),
        # vaultd and the AWS CLI installed as the README's Install section says; no region.
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "NO_PROXY": "*",
        # Stand-ins for a real machine: STS is moto, and the daemon listens on a free port
        # (the README's `vaultd serve` takes 9169) that `vaultd env` learns as it would from
        # ~/.config/vaultd/config.toml.
        "AWS_ENDPOINT_URL_STS": moto,
        "VAULTD_LISTEN": listen,
    }
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-e"],
        input=script,
        env=shell,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "arn:aws:sts::222233334444:assumed-role/DeveloperRole/" in done.stdout, done.stdout
