"""The command line's messages and exit codes at its edges: a closed stdout, a missing MFA code,
keys with nowhere to come from, no systemd user bus, -V, a mistyped command, shell completion,
a malformed document from the control socket, and a daemon gone before it answered."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.fake_control import SERVING_STATUS, FakeControl
from tests.e2e.harness import run_on_tty, run_vaultd, vaultd_env
from vaultd import settings

COMMANDS = [
    *("serve", "add", "remove", "list", "switch", "mfa", "exec", "export", "rotate", "login"),
    *("refresh", "clear", "status", "env", "relay", "service", "network", "doctor", "demo"),
    "completion",
]


@pytest.fixture
def control() -> Iterator[Path]:
    """A fake daemon on the default control socket, answering the SERVING_STATUS document."""
    path = settings.load().control_socket
    answers = {("GET", "/v1/status"): (200, SERVING_STATUS)}
    with FakeControl(path, answers):
        yield path


def _into(stdout: int, args: list[str], *, buffered: bool) -> subprocess.CompletedProcess[str]:
    """Run `vaultd ARGS` with `stdout` as its standard output (a descriptor), buffered as
    a pipe or file is unless PYTHONUNBUFFERED says otherwise."""
    env = vaultd_env()
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    return subprocess.run(
        [sys.executable, "-m", "vaultd", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        timeout=60,
        check=False,
    )


def _into_closed_pipe(args: list[str], *, buffered: bool) -> subprocess.CompletedProcess[str]:
    """Run `vaultd ARGS` with stdout a pipe whose reading end is already closed, as when the
    reader (`| true`, `| head -c1`) has gone before vaultd writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return _into(write_end, args, buffered=buffered)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["list", "--json"], ["-V"], ["completion", "bash"]],
    ids=" ".join,
)
def test_a_closed_stdout_ends_quietly(
    control: Path, aws_config: Path, args: list[str], *, buffered: bool
) -> None:
    done = _into_closed_pipe(args, buffered=buffered)
    assert done.stderr == ""
    assert done.returncode == 141


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
@pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["list", "--json"], ["completion", "bash"]],
    ids=" ".join,
)
def test_output_that_cannot_be_written_is_one_line(
    control: Path, aws_config: Path, args: list[str], *, buffered: bool
) -> None:
    with Path("/dev/full").open("w") as full:
        done = _into(full.fileno(), args, buffered=buffered)
    assert done.returncode == 1
    assert done.stderr == "vaultd: cannot write the output: No space left on device\n"


@pytest.mark.parametrize("args", [["status"], ["switch", "master"], ["mfa", "123456"], ["list"]])
def test_an_empty_socket_path_is_a_usage_error(args: list[str]) -> None:
    # Not a silent fall-back to the default socket (breaker pass).
    done = run_vaultd(*args, "--control-socket", "")
    assert done.returncode == 2
    assert "--control-socket: invalid path value: ''" in done.stderr


@pytest.mark.parametrize(
    ("args", "usage", "hint"),
    [
        (["status", "--jsn"], "usage: vaultd status", "(did you mean --json?)"),
        (["mfa", "--wacth"], "usage: vaultd mfa", "(did you mean --watch?)"),
        (["switch", "master", "extra"], "usage: vaultd switch", ""),
    ],
)
def test_a_stray_word_gets_its_commands_usage_and_the_close_option(
    args: list[str], usage: str, hint: str
) -> None:
    done = run_vaultd(*args)
    assert done.returncode == 2
    assert done.stderr.startswith(usage)
    assert f"error: unrecognized arguments: {args[-1]} {hint}".rstrip() in done.stderr


def test_mfa_without_a_code_when_none_is_wanted_says_so(control: Path) -> None:
    # Not "no code given and no terminal" (exit 3) when nothing waits for a code.
    assert SERVING_STATUS["mfa"] is None  # serving, no code asked for
    done = run_vaultd("mfa", stdin="")
    assert (done.returncode, done.stderr) == (1, "vaultd: no MFA code is being waited for\n")


def test_mfa_without_a_code_or_a_terminal_is_exit_3() -> None:
    # README: 3 = an MFA code was needed, none was given, no terminal to ask on.
    waiting = {**SERVING_STATUS, "mfa": {"profile": "master", "serial": "arn:aws:iam::1:mfa/me"}}
    with FakeControl(settings.load().control_socket, {("GET", "/v1/status"): (200, waiting)}):
        for args in (["mfa"], ["mfa", "-"]):
            done = run_vaultd(*args, stdin="")
            assert done.returncode == 3, (args, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1
        assert "`vaultd mfa -`" in run_vaultd("mfa", stdin="").stderr
    done = run_vaultd("mfa", "-", stdin="12\n")
    assert done.returncode == 2 and "six digits" in done.stderr
    done = run_vaultd("mfa", "--watch", stdin="")
    assert done.returncode == 2 and "--watch needs a terminal" in done.stderr


def test_mfa_with_no_daemon_says_so_before_asking_for_a_code() -> None:
    # A code typed for no daemon is wasted (and one of STS's few tries): exit 4 first.
    done = run_vaultd("mfa", stdin="")
    assert (done.returncode, done.stderr.count("\n")) == (4, 1), done.stderr
    assert "not running" in done.stderr
    code, shown = run_on_tty(["mfa"], "123456", "MFA code: ", timeout=30)
    assert (code, "MFA code: " in shown, "not running" in shown) == (4, False, True), shown


def test_add_with_no_terminal_and_no_keys_says_every_way_to_give_them(aws_config: Path) -> None:
    done = run_vaultd("add", "identity", stdin="")
    assert done.returncode == 1
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "`vaultd add identity` in a terminal" in message
    assert "one per line" in message and "--env" in message
    assert "--stdin expects" not in message
    # Asked for explicitly, --stdin keeps its own message.
    assert "--stdin expects" in run_vaultd("add", "identity", "--stdin", stdin="").stderr


@pytest.mark.skipif(sys.platform != "linux", reason="the systemd plan is Linux's")
@pytest.mark.parametrize(("action", "word"), [("status", "checked"), ("install", "installed")])
def test_service_without_a_user_bus_says_what_it_means(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, action: str, word: str
) -> None:
    # systemctl as it answers in a container or under su: no user manager to reach.
    bin_dir = isolated / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(
        "#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n"
    )
    systemctl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    done = run_vaultd("service", action)
    assert done.returncode == 1
    *_, systemd_said, vaultd_said = done.stderr.strip().splitlines()
    assert systemd_said == "Failed to connect to bus: No medium found"
    assert "Traceback" not in done.stderr
    assert f"login service cannot be {word} here" in vaultd_said
    assert "`vaultd serve`" in vaultd_said and "loginctl enable-linger" in vaultd_said


def test_version_comes_from_the_package_metadata() -> None:
    import vaultd

    expected = f"vaultd {importlib.metadata.version('vaultd')}\n"
    for flag in ("-V", "--version"):
        done = run_vaultd(flag)
        assert (done.returncode, done.stdout, done.stderr) == (0, expected, "")
    assert vaultd.__version__ == importlib.metadata.version("vaultd")


@pytest.mark.parametrize(("typed", "meant"), [("swtich", "switch"), ("stauts", "status")])
def test_a_mistyped_command_names_the_close_one(typed: str, meant: str) -> None:
    done = run_vaultd(typed, "master")
    assert done.returncode == 2
    assert f"unknown command {typed!r}: did you mean `vaultd {meant}`?" in done.stderr
    assert "choose from" not in done.stderr
    # Nothing close: argparse's list of commands stands.
    assert "choose from" in run_vaultd("xyzzy").stderr


def _syntax_check(shell: str, script: Path) -> list[str]:
    return {
        "bash": ["bash", "-n", str(script)],
        "zsh": ["zsh", "-n", str(script)],
        "fish": ["fish", "--no-execute", str(script)],
    }[shell]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_for_each_shell(isolated: Path, shell: str) -> None:
    done = run_vaultd("completion", shell)
    assert done.returncode == 0, done.stderr
    for name in COMMANDS:
        assert name in done.stdout, name
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed: its completion script was not syntax-checked")
    script = isolated / f"vaultd.{shell}"
    script.write_text(done.stdout)
    check = subprocess.run(
        _syntax_check(shell, script), capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


def test_bash_completion_completes_commands_and_options(isolated: Path) -> None:
    script = isolated / "vaultd.bash"
    script.write_text(run_vaultd("completion", "bash").stdout)
    probe = (
        f"source {script}\n"
        "COMP_WORDS=(vaultd sw); COMP_CWORD=1; _shtab_vaultd; echo ${COMPREPLY[@]}\n"
        "COMP_WORDS=(vaultd status --); COMP_CWORD=2; _shtab_vaultd; echo ${COMPREPLY[@]}\n"
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    first, second = done.stdout.splitlines()
    assert first == "switch"
    assert "--json" in second.split() and "--control-socket" in second.split()


def test_status_renders_a_full_document(control: Path) -> None:
    done = run_vaultd("status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "active:      master",
        "state:       ok - serving master",
        "role:        arn:aws:iam::222233334444:role/DeveloperRole",
        "credentials: ASIA...MPLE expires 2026-11-30T06:00:00Z (in 50 min, "
        "refresh at 2026-11-30T05:45:00Z)",
        "exec:        master (1)",
        "listening:   127.0.0.1:9169",
    ]


def _without(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = {**SERVING_STATUS, "credentials": {**SERVING_STATUS["credentials"]}}
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[key]
    del target[last]
    return doc


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (_without("credentials.expires_in"), "credentials.expires_in is missing"),
        (_without("state"), "state is missing"),
        ({**SERVING_STATUS, "credentials": "soon"}, "credentials is not an object"),
        (
            {**SERVING_STATUS, "mfa": {"profile": "master", "serial": 7}},
            "mfa.serial is int, not a string",
        ),
        ({**SERVING_STATUS, "listeners": "127.0.0.1:9169"}, "listeners is str, not a list"),
    ],
)
def test_a_malformed_status_document_is_one_clear_line(
    doc: dict[str, Any], problem: str, *, as_json: bool
) -> None:
    path = settings.load().control_socket
    with FakeControl(path, {("GET", "/v1/status"): (200, doc)}):
        done = run_vaultd("status", *(["--json"] if as_json else []))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"vaultd: vaultd answered a malformed status document: {problem}\n"


def test_switch_reads_only_what_it_prints_and_checks_it() -> None:
    path = settings.load().control_socket
    answer = {"active": "master", "state": "ok", "credentials": {"expires": "2030-01-01T00:00:00Z"}}
    with FakeControl(path, {("POST", "/v1/switch"): (200, answer)}):
        done = run_vaultd("switch", "master")
    assert (done.returncode, done.stdout) == (
        0,
        "Serving master until 2030-01-01T00:00:00Z.\n",
    )
    # A profile without a role: the ARN its credentials belong to, when the daemon knows it.
    held = {"expires": "2030-01-01T00:00:00Z", "arn": "arn:aws:iam::1:user/a"}
    user = {**answer, "credentials": held}
    with FakeControl(path, {("POST", "/v1/switch"): (200, user)}):
        done = run_vaultd("switch", "master")
    assert done.stdout == "Serving master (arn:aws:iam::1:user/a) until 2030-01-01T00:00:00Z.\n"
    answer["credentials"] = {"expires": 1893456000}
    with FakeControl(path, {("POST", "/v1/switch"): (200, answer)}):
        done = run_vaultd("switch", "master")
    assert done.returncode == 1
    assert done.stderr == (
        "vaultd: vaultd answered a malformed status document: credentials.expires is int, "
        "not a string\n"
    )


@pytest.mark.parametrize(
    ("words", "path"),
    [
        (("switch", "master"), ("POST", "/v1/switch")),
        (("mfa", "123456"), ("POST", "/v1/mfa")),
        (("refresh",), ("POST", "/v1/refresh")),
    ],
)
def test_every_command_checks_the_document_it_reads(
    words: tuple[str, ...], path: tuple[str, str]
) -> None:
    """An empty object is not an answer: say so in one line, never `Active profile None`."""
    with FakeControl(settings.load().control_socket, {path: (200, {})}):
        done = run_vaultd(*words)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "vaultd: vaultd answered a malformed status document: state is missing\n"


def test_doctor_checks_the_status_document() -> None:
    with FakeControl(settings.load().control_socket, {("GET", "/v1/status"): (200, {})}):
        done = run_vaultd("doctor")
    assert "Traceback" not in done.stderr
    assert "[FAIL] daemon: vaultd answered a malformed status document: state is missing\n" in (
        done.stdout
    )


@pytest.mark.parametrize(
    "words",
    [
        ("switch", "master", "--mfa", "12"),
        ("switch", "master", "--mfa", ""),
        ("mfa", "123"),
        ("exec", "master", "--mfa", "12345a", "--", "true"),
    ],
)
def test_a_malformed_mfa_code_is_a_usage_error_before_the_daemon_is_asked(
    words: tuple[str, ...],
) -> None:
    """README: exit 2 for a malformed MFA code, whichever command carries it. With no daemon
    running, exit 4 would show that the daemon was asked first."""
    done = run_vaultd(*words)
    assert (done.returncode, done.stderr) == (2, "vaultd: an MFA code is six digits\n")


@pytest.mark.parametrize("command", ["switch", "refresh", "exec", "export", "add", "remove"])
def test_an_empty_profile_name_is_a_usage_error_in_the_users_terms(command: str) -> None:
    done = run_vaultd(command, "")
    assert done.returncode == 2
    assert "argument PROFILE: a profile name cannot be empty" in done.stderr
    assert "'profile'" not in done.stderr


@pytest.mark.parametrize("words", [("exec", "master"), ("exec", "master", "--")])
def test_exec_without_a_command_and_no_terminal_is_a_usage_error(words: tuple[str, ...]) -> None:
    done = run_vaultd(*words)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "vaultd: no command given: `vaultd exec master -- CMD [ARGS...]` "
        "(a shell is started only on a terminal)\n"
    )


def test_a_listen_address_that_cannot_be_bound_is_its_error_alone() -> None:
    done = run_vaultd("serve", "--listen", "192.0.2.1:80")
    assert done.returncode != 0
    assert "core dumps" not in done.stderr
    assert "cannot listen on" in done.stderr and done.stderr.count("\n") == 1


def test_removing_a_profile_with_nothing_stored_says_so_before_asking() -> None:
    done = run_vaultd("remove", "nosuch")
    assert (done.returncode, done.stderr) == (1, "vaultd: nothing stored for profile 'nosuch'\n")


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("0:9", "http://127.0.0.1:9/"),  # `0` binds 0.0.0.0, which SDKs reach as 127.0.0.1
        ("127.1:9", "http://127.0.0.1:9/"),
        ("[::]:9", "http://[::1]:9/"),
        ("localhost:9", "http://localhost:9/"),
    ],
)
def test_env_maps_a_listen_address_as_the_daemon_does(listen: str, url: str) -> None:
    done = run_vaultd("env", "--listen", listen)
    assert (done.returncode, done.stdout) == (
        0,
        f"export AWS_EC2_METADATA_SERVICE_ENDPOINT={url}\n",
    )


def test_env_says_port_0_is_no_endpoint_before_the_daemon_runs() -> None:
    done = run_vaultd("env", "--listen", "[::]:0")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "vaultd: listen address [::]:0 takes a free port when the daemon starts, so there is "
        "no endpoint to print yet: start `vaultd serve`, then run `vaultd env`\n"
    )


@pytest.mark.parametrize(
    "args",
    [["status"], ["switch", "master"], ["mfa", "123456"], ["list"], ["env"], ["serve"]],
    ids=lambda a: a[0],
)
def test_a_settings_file_that_is_not_utf8_is_one_line_naming_it(args: list[str]) -> None:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "vaultd" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xfe garbage\n")
    done = run_vaultd(*args, stdin="")
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"vaultd: {path}: not UTF-8 text (byte 0), which TOML must be\n"


def test_status_says_a_wait_or_a_failure_once_and_a_past_failure_as_an_error() -> None:
    # The state line carries the wait, and why (the daemon puts a failed code source there):
    # the last error, the same condition, is not said again (it named the wrong device
    # behind another profile's request, and made a wait read as a fault).
    waiting = {
        **SERVING_STATUS,
        "state": "mfa_required",
        "message": "waiting for an MFA code for master (arn:aws:iam::1:mfa/me); mfa_process "
        "exited with status 3: boom: run `vaultd mfa CODE`",
        "credentials": None,
        "mfa": {"profile": "master", "serial": "arn:aws:iam::1:mfa/me"},
        "last_error": {"error": "mfa_required", "message": "needs a code", "at": "T"},
    }
    # Serving what it holds while STS is down: the failure is not the state.
    failing = {
        **SERVING_STATUS,
        "last_error": {"error": "sts_error", "message": "cannot reach STS", "at": "T"},
    }
    path = settings.load().control_socket
    with FakeControl(path, {("GET", "/v1/status"): (200, waiting)}):
        shown = run_vaultd("status").stdout
    assert "last error" not in shown and "status 3: boom" in shown, shown
    with FakeControl(path, {("GET", "/v1/status"): (200, failing)}):
        shown = run_vaultd("status").stdout
    assert "last error:  sts_error at T: cannot reach STS\n" in shown


def test_a_code_for_another_profiles_request_says_whose_it_was() -> None:
    # An exec of `other` left its request open; the code answers it, not master's.
    waiting = {**SERVING_STATUS, "mfa": {"profile": "other", "serial": "arn:aws:iam::1:mfa/me"}}
    answers = {
        ("GET", "/v1/status"): (200, waiting),
        ("POST", "/v1/mfa"): (200, {**SERVING_STATUS, "answered": "other"}),
    }
    with FakeControl(settings.load().control_socket, answers):
        done = run_vaultd("mfa", "123456")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Code accepted for other.",
        "Serving master (arn:aws:iam::222233334444:role/DeveloperRole) until 2026-11-30T06:00:00Z.",
    ]
    answers[("POST", "/v1/mfa")] = (200, {**SERVING_STATUS, "answered": "master"})
    with FakeControl(settings.load().control_socket, answers):
        done = run_vaultd("mfa", "123456")
    assert done.stdout.startswith("Serving master"), done.stdout


def test_a_code_accepted_with_no_profile_active_is_not_called_malformed() -> None:
    # `vaultd clear; vaultd exec other` with no terminal, then `vaultd mfa CODE`: the code
    # served other, and no profile is active. Before: "malformed status document", exit 1.
    idle: dict[str, Any] = {
        "active": None,
        "state": "no_profile",
        "message": "no profile is active: run `vaultd switch PROFILE`",
        "answered": "other",
    }
    waiting: dict[str, Any] = {
        **idle,
        "mfa": {"profile": "other", "serial": "arn:aws:iam::1:mfa/me"},
    }
    answers = {("GET", "/v1/status"): (200, waiting), ("POST", "/v1/mfa"): (200, idle)}
    with FakeControl(settings.load().control_socket, answers):
        done = run_vaultd("mfa", "123456")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "Code accepted for other.",
        "No profile is active: run `vaultd switch PROFILE`.",
    ]


@pytest.mark.parametrize(
    "cut",
    [b"", b'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{"active'],
    ids=["nothing", "half"],
)
def test_a_daemon_that_stops_during_a_call_says_so(cut: bytes) -> None:
    # `kill` of the daemon during `vaultd switch slow` (an mfa_process that sleeps) said
    # `talking to vaultd failed: a truncated or oversized line`.
    with FakeControl(settings.load().control_socket, {("POST", "/v1/switch"): cut}):
        done = run_vaultd("switch", "slow")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "vaultd: vaultd closed the connection before answering: it stopped or restarted "
        "(`vaultd status` tells)\n"
    )


@pytest.mark.parametrize(
    ("words", "path"),
    [
        (("exec", "other", "--", "true"), ("POST", "/v1/exec-tokens")),
        (("export", "other"), ("POST", "/v1/credentials")),
        (("switch", "other"), ("POST", "/v1/switch")),
    ],
)
def test_exit_3_says_how_the_command_itself_takes_a_code(
    words: tuple[str, ...], path: tuple[str, str]
) -> None:
    # exec and export are over once they exit 3: the request `vaultd mfa CODE` answers
    # helps only a run after it, and --mfa gives the code to this one. A switch stands.
    needed = {
        "error": "mfa_required",
        "message": "profile 'other' needs an MFA code: run `vaultd mfa CODE`",
        "mfa_serial": "arn:aws:iam::1:mfa/me",
    }
    with FakeControl(settings.load().control_socket, {path: (409, needed)}):
        done = run_vaultd(*words, stdin="")
    assert done.returncode == 3, done.stderr
    again = "then run this command again; or give it the code: --mfa CODE, or --mfa -"
    assert (again in done.stderr) == (words[0] != "switch"), done.stderr


def test_refreshing_a_profile_that_is_not_active_names_it_before_what_is_served() -> None:
    # `vaultd refresh identity` with master active printed only "Serving master ...".
    answers = {("POST", "/v1/refresh"): (200, SERVING_STATUS)}
    with FakeControl(settings.load().control_socket, answers):
        other = run_vaultd("refresh", "identity")
        active = run_vaultd("refresh", "master")
        plain = run_vaultd("refresh")
    serving = "Serving master (arn:aws:iam::222233334444:role/DeveloperRole) until "
    assert other.stdout.splitlines()[0] == "Refreshed identity.", other.stdout + other.stderr
    assert other.stdout.splitlines()[1].startswith(serving)
    assert active.stdout.startswith(serving) and plain.stdout.startswith(serving)
