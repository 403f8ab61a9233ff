"""What the commands that speak about *this shell* say, against a running daemon, with boto3
in the same shell showing what it actually does: `vaultd env` names where the daemon
serves, `vaultd export` warns when the shell's own settings would stop its keys, and
`vaultd doctor` fetches as botocore in the shell would and names the setting that stops it."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import Daemon, run_vaultd, vaultd_env

BOTO3_METHOD = """
import json, boto3
creds = boto3.session.Session(region_name="us-east-1").get_credentials()
print(json.dumps({"method": creds.method if creds else None}))
"""


def in_shell(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=90, check=False)


def boto3_method(env: dict[str, str]) -> str | None:
    """How boto3 in `env` finds credentials; None when it finds none or fails trying
    (AWS_METADATA_SERVICE_TIMEOUT=0 makes botocore raise HTTPClientError)."""
    done = in_shell(env, sys.executable, "-c", BOTO3_METHOD)
    if done.returncode != 0:
        return None
    method: str | None = json.loads(done.stdout)["method"]
    return method


def test_env_prints_where_the_running_daemon_serves(daemon: Daemon) -> None:
    daemon.start()  # --listen 127.0.0.1:0: a port the settings cannot know
    done = run_vaultd("env")
    assert (done.returncode, done.stdout) == (
        0,
        f"export AWS_EC2_METADATA_SERVICE_ENDPOINT={daemon.endpoint}\n",
    )
    assert daemon.endpoint != "http://127.0.0.1:9169/"


def test_export_warns_when_the_shell_names_a_profile_that_does_not_exist(
    user_keys: tuple[str, str], daemon: Daemon
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    shell = {**vaultd_env(), "AWS_PROFILE": "nosuch"}
    done = in_shell(shell, sys.executable, "-m", "vaultd", "export", "master")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("vaultd: warning: AWS_PROFILE=nosuch names no profile in ")
    assert done.stderr.endswith(", even with these keys: unset AWS_PROFILE\n")
    # boto3 with the exported keys in that shell indeed fails (botocore: ProfileNotFound).
    keys = dict(line.split("=", 1) for line in done.stdout.splitlines())
    failed = in_shell({**shell, **keys}, sys.executable, "-c", BOTO3_METHOD)
    assert failed.returncode != 0 and "ProfileNotFound" in failed.stderr
    # Without the bad variable, nothing to say.
    quiet = run_vaultd("export", "master")
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_doctor_fetches_with_this_shells_imds_settings_and_names_them(
    user_keys: tuple[str, str], daemon: Daemon, isolated: Path
) -> None:
    daemon.start()
    assert run_vaultd("switch", "master", "--mfa", "123456").returncode == 0
    shell = {**vaultd_env(), "AWS_EC2_METADATA_SERVICE_ENDPOINT": daemon.endpoint}
    assert boto3_method(shell) == "iam-role"
    cases = {
        "AWS_METADATA_SERVICE_NUM_ATTEMPTS": (
            {"AWS_METADATA_SERVICE_NUM_ATTEMPTS": "0"},
            "AWS_METADATA_SERVICE_NUM_ATTEMPTS=0 makes botocore never ask IMDS: "
            "unset it (default 1)",
        ),
        "AWS_METADATA_SERVICE_TIMEOUT": (
            {"AWS_METADATA_SERVICE_TIMEOUT": "0"},
            "AWS_METADATA_SERVICE_TIMEOUT=0 gives botocore no time to ask IMDS: "
            "unset it (default 1)",
        ),
        "HTTP_PROXY": (
            {"HTTP_PROXY": "http://127.0.0.1:1", "NO_PROXY": ""},
            "HTTP_PROXY sends botocore's IMDS requests to a proxy: "
            "export NO_PROXY=127.0.0.1,169.254.169.254",
        ),
    }
    for name, (extra, said) in cases.items():
        env = {**shell, **extra}
        assert boto3_method(env) is None, name  # what an SDK in that shell gets
        done = in_shell(env, sys.executable, "-m", "vaultd", "doctor")
        assert done.returncode == 1, name
        fetch = next(line for line in done.stdout.splitlines() if "] fetch: " in line)
        assert fetch.startswith("[FAIL] fetch: ") and fetch.endswith(said), fetch


EVAL_ENV = {
    # bash and zsh as the README says; fish reads `export NAME=VALUE` lines too.
    "bash": [
        "bash",
        "-c",
        'eval "$({vaultd} env)"; printf %s "$AWS_EC2_METADATA_SERVICE_ENDPOINT"',
    ],
    "zsh": ["zsh", "-fc", 'eval "$({vaultd} env)"; printf %s "$AWS_EC2_METADATA_SERVICE_ENDPOINT"'],
    "fish": [
        "fish",
        "-Nc",
        '{vaultd} env | source; printf %s "$AWS_EC2_METADATA_SERVICE_ENDPOINT"',
    ],
}


@pytest.mark.parametrize("shell", EVAL_ENV)
@pytest.mark.parametrize(
    ("listen", "endpoint"),
    [("127.0.0.1:9300", "http://127.0.0.1:9300/"), ("[::1]:9300", "http://[::1]:9300/")],
)
def test_env_evaluates_to_the_endpoint_in_each_shell(
    shell: str, listen: str, endpoint: str, isolated: Path
) -> None:
    # No daemon: the address is the settings', checked by `Listen.parse`, so what is printed
    # is plain (an IPv6 address in brackets is not globbed in an assignment, in any of them).
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    env = {**vaultd_env(), "VAULTD_LISTEN": listen, "VAULTD_CONTROL_SOCKET": str(isolated / "no")}
    argv = [
        part.format(vaultd=f"{shlex.quote(sys.executable)} -m vaultd") for part in EVAL_ENV[shell]
    ]
    done = in_shell(env, *argv)
    assert (done.returncode, done.stdout, done.stderr) == (0, endpoint, "")


@pytest.mark.parametrize(
    "host", ["$(touch {mark})", "`touch {mark}`", "(touch {mark})", "a b", "it's", "a;touch {mark}"]
)
def test_a_listen_host_with_shell_syntax_is_refused_not_printed(host: str, isolated: Path) -> None:
    # Before, `vaultd env` printed it as it was, and `eval "$(vaultd env)"` in ~/.bashrc ran it.
    mark = isolated / "ran"
    env = {
        **vaultd_env(),
        "VAULTD_LISTEN": host.format(mark=mark) + ":9300",
        "VAULTD_CONTROL_SOCKET": str(isolated / "no"),
    }
    vaultd = f"{shlex.quote(sys.executable)} -m vaultd"
    in_shell(env, "bash", "-c", f'eval "$({vaultd} env)"')
    assert not mark.exists()
    done = in_shell(env, sys.executable, "-m", "vaultd", "env")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.count("\n") == 1 and "is not an IP address or a host name" in done.stderr


def test_list_and_doctor_say_when_the_daemon_reads_another_config_file(
    user_keys: tuple[str, str], daemon: Daemon, aws_config: Path, isolated: Path
) -> None:
    # A daemon started by the service manager, a shell with its own AWS_CONFIG_FILE: `list`
    # showed this shell's profiles, and `switch` then said "no profile" with no hint why.
    daemon.start()
    other = isolated / "other-config"
    other.write_text(aws_config.read_text() + "[profile shellonly]\nsource_profile = identity\n")
    shell = {**vaultd_env(), "AWS_CONFIG_FILE": str(other)}
    said = (
        f"the daemon reads {aws_config}, this shell {other}: switch and exec go by the "
        "daemon's (set AWS_CONFIG_FILE alike for both)"
    )
    listed = in_shell(shell, sys.executable, "-m", "vaultd", "list")
    assert listed.returncode == 0 and "shellonly" in listed.stdout
    assert listed.stderr == f"vaultd: note: {said}\n"
    doctor = in_shell(shell, sys.executable, "-m", "vaultd", "doctor")
    assert f"[warn] config: {said}" in doctor.stdout, doctor.stdout
    # The same file by another name (a link) is the same file: nothing to say.
    other.unlink()
    other.symlink_to(aws_config)
    listed = in_shell(shell, sys.executable, "-m", "vaultd", "list")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert (
        "the daemon reads" not in in_shell(shell, sys.executable, "-m", "vaultd", "doctor").stdout
    )
