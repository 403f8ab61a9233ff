"""`vaultd demo` from start to Ctrl-C: it serves the role, prints one block that makes a new
shell (no venv on PATH, no region variables) work against it, then leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import vaultd_env
from vaultd.demo import Sandbox, _ended, pick_listen

# A new terminal's PATH: the system's directories only, none holding vaultd or the AWS CLI.
BARE_PATH = "/usr/bin:/bin"


@dataclass
class RunningDemo:
    proc: subprocess.Popen[str]
    output: str

    @property
    def workdir(self) -> Path:
        found = re.search(r"keyring under (\S+)", self.output)
        assert found is not None, self.output
        return Path(found.group(1))

    def paste_block(self) -> str:
        """The indented lines between the invitation to paste and `Ready.`, unindented."""
        _, _, rest = self.output.partition("Paste these lines")
        block, _, _ = rest.partition("\nReady.")
        lines = [line[2:] for line in block.splitlines() if line.startswith("  ")]
        assert lines, self.output
        return "\n".join(lines) + "\n"


def fresh_shell(home: Path) -> dict[str, str]:
    """The environment of a new terminal: a HOME, the system PATH, no AWS or vaultd variables."""
    assert shutil.which("vaultd", path=BARE_PATH) is None
    assert shutil.which("aws", path=BARE_PATH) is None
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "PATH": BARE_PATH, "LANG": "C.UTF-8", "NO_PROXY": "*"}


def run_in_bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Feed `script` to a new non-interactive bash as if pasted; stop at the first failure."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e"],
        input=script,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def start_demo(home: Path, *, own_group: bool = False, ignore_sigint: bool = False) -> RunningDemo:
    """`vaultd demo` as a person starts it, isolated in `home` (no AWS, vaultd, XDG or
    keyring variables from the caller), read up to its `Ready.` line; with `own_group`, as
    a shell's job: the leader of a process group its daemon belongs to; with
    `ignore_sigint`, as a script's background job, which inherits SIGINT ignored."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "VAULTD_", "XDG_", "PYTHON_KEYRING"))
    }
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), NO_PROXY="*")
    # An ignored signal stays ignored across exec: the shell ignores it, then becomes the demo.
    ignoring = ["sh", "-c", 'trap "" INT && exec "$@"', "sh"] if ignore_sigint else []
    proc = subprocess.Popen(
        [*ignoring, sys.executable, "-m", "vaultd", "demo", "--listen", "127.0.0.1:0"],
        env=vaultd_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_group,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ready."):
            break
    return RunningDemo(proc, "".join(lines))


def stop_demo(proc: subprocess.Popen[str]) -> None:
    """Stop it as a person would (Ctrl-C), so a failed test still leaves no daemon or
    temporary directory behind; SIGKILL would orphan the demo's daemon. SIGTERM next: a
    caller that runs pytest with SIGINT ignored passes that on."""
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        proc.send_signal(stop)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    # Module scope starts before the autouse `isolated` fixture: start_demo isolates it.
    running = start_demo(tmp_path_factory.mktemp("demo-home"))
    try:
        yield running
    finally:
        stop_demo(running.proc)


def test_demo_serves_the_role(demo: RunningDemo) -> None:
    checked = "Checked: boto3 through IMDS is arn:aws:sts::222233334444:assumed-role/DeveloperRole/"
    assert checked in demo.output, demo.output
    assert demo.workdir.exists()


def test_the_paste_block_works_verbatim_in_a_new_shell(demo: RunningDemo, tmp_path: Path) -> None:
    done = run_in_bash(demo.paste_block(), fresh_shell(tmp_path / "home"))
    assert done.returncode == 0, done.stdout + done.stderr
    # vaultd status, vaultd list, then the AWS CLI (v1: no IMDS region lookup) through IMDS.
    assert re.search(r"^\s*\*?\s*master\b", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^\s*\*?\s*identity\b.*stored keys", done.stdout, re.MULTILINE), done.stdout
    assert "arn:aws:sts::222233334444:assumed-role/DeveloperRole/" in done.stdout, done.stdout


# What a developer's own shell may hold, each of which decides before IMDS does (the SDKs'
# credential chain) or sends STS calls elsewhere.
SHELL_OWN_AWS = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9/",
    "AWS_PROFILE": "work",
    "AWS_ACCESS_KEY_ID": "AKIAREALLOOKINGKEY01",
    "AWS_SECRET_ACCESS_KEY": "not-the-demo",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/nonexistent/token",
    "AWS_ROLE_ARN": "arn:aws:iam::111122223333:role/Elsewhere",
}


def test_the_paste_block_works_in_a_shell_with_aws_variables_of_its_own(
    demo: RunningDemo, tmp_path: Path
) -> None:
    done = run_in_bash(demo.paste_block(), {**fresh_shell(tmp_path / "home"), **SHELL_OWN_AWS})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "arn:aws:sts::222233334444:assumed-role/DeveloperRole/" in done.stdout, done.stdout


def test_plain_status_says_where_it_looked_and_how_to_look_elsewhere(
    demo: RunningDemo, tmp_path: Path
) -> None:
    bin_line = demo.paste_block().splitlines()[0]
    assert bin_line.startswith("export PATH=")
    done = run_in_bash(f"{bin_line}\nvaultd status\n", fresh_shell(tmp_path / "home"))
    assert done.returncode == 4
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert re.search(r"no daemon on /\S+/control\.sock", message), message
    assert "VAULTD_CONTROL_SOCKET" in message


def test_ctrl_c_stops_the_demo_and_leaves_nothing_behind(demo: RunningDemo) -> None:
    workdir = demo.workdir
    demo.proc.send_signal(signal.SIGINT)
    out, err = demo.proc.communicate(timeout=30)
    assert demo.proc.returncode == 0, err
    assert "Demo stopped" in out
    assert not workdir.exists()
    assert "Traceback" not in err


@pytest.mark.parametrize("background", [False, True])
def test_ctrl_c_to_the_process_group_stops_the_demo_and_its_daemon_together(
    tmp_path: Path, background: bool
) -> None:
    """A terminal's Ctrl-C (or `kill -INT -PGID`) signals the whole process group: the daemon
    stops at the same moment as the demo, which must not take that for a failure. A
    background job of a script ignores SIGINT (POSIX, job control off): then only the daemon
    stops, and the demo follows it."""
    running = start_demo(tmp_path / "home", own_group=True, ignore_sigint=background)
    try:
        os.killpg(running.proc.pid, signal.SIGINT)
        out, err = running.proc.communicate(timeout=30)
    finally:
        stop_demo(running.proc)
    assert running.proc.returncode == 0, err
    assert "demo failed" not in err
    assert "Demo stopped" in out
    assert not running.workdir.exists()


@pytest.mark.parametrize(
    "signals",
    [
        [signal.SIGHUP],  # the terminal was closed
        [signal.SIGQUIT],  # Ctrl-\
        [signal.SIGINT, signal.SIGINT],  # Ctrl-C twice: the second lands in the clean-up
        [signal.SIGTERM, signal.SIGTERM],
    ],
    ids=["hup", "quit", "int-int", "term-term"],
)
def test_every_stopping_signal_to_the_group_cleans_up_once(
    tmp_path: Path, signals: list[signal.Signals]
) -> None:
    running = start_demo(tmp_path / "home", own_group=True)
    daemons = [pid for pid, argv in _children(running.proc.pid) if argv.endswith(" serve ")]
    try:
        for signum in signals:
            os.killpg(running.proc.pid, signum)
            time.sleep(0.2)  # a person's second keypress, not a clock the code reads
        out, err = running.proc.communicate(timeout=30)
    finally:
        stop_demo(running.proc)
    assert running.proc.returncode == 0, err
    assert "Demo stopped" in out
    assert "demo failed" not in err
    assert not running.workdir.exists()
    assert daemons and not any(Path(f"/proc/{pid}").exists() for pid in daemons)


def test_a_taken_default_port_moves_the_demo_to_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert pick_listen(None, ("127.0.0.1", port)) == "127.0.0.1:0"
        assert pick_listen("127.0.0.1:7000", ("127.0.0.1", port)) == "127.0.0.1:7000"
    assert pick_listen(None, ("127.0.0.1", port)) == f"127.0.0.1:{port}"


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of each process whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append((int(entry.name), argv))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_the_demo_stops_and_cleans_up_when_its_daemon_dies(tmp_path: Path) -> None:
    running = start_demo(tmp_path / "home")
    try:
        workdir = running.workdir
        daemons = [pid for pid, argv in _children(running.proc.pid) if argv.endswith(" serve ")]
        assert len(daemons) == 1, _children(running.proc.pid)
        os.kill(daemons[0], signal.SIGKILL)
        out, err = running.proc.communicate(timeout=30)
    finally:
        stop_demo(running.proc)
    assert running.proc.returncode == 1
    assert "its daemon was killed by signal 9 (SIGKILL)" in err
    assert "Demo stopped" in out
    assert not workdir.exists()
    assert "Traceback" not in err


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigterm_while_the_demo_starts_leaves_nothing_behind(tmp_path: Path) -> None:
    """Stopped as soon as its daemon exists, before it answers: no daemon left serving, no
    throwaway keyring left in /tmp."""
    before = set(Path(tempfile.gettempdir()).glob("vaultd-demo-*"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULTD_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), NO_PROXY="*")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "demo", "--listen", "127.0.0.1:0"],
        env=vaultd_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        daemons: list[int] = []
        while not daemons and time.monotonic() < deadline and proc.poll() is None:
            daemons = [pid for pid, argv in _children(proc.pid) if argv.endswith(" serve ")]
        assert daemons, "the demo never started its daemon"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        stop_demo(proc)
    assert proc.returncode == 0, err
    assert "Demo stopped" in out
    assert not Path(f"/proc/{daemons[0]}").exists()
    assert set(Path(tempfile.gettempdir()).glob("vaultd-demo-*")) <= before


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (-9, "its daemon was killed by signal 9 (SIGKILL)"),
        (-40, "its daemon was killed by signal 40 (Real-time signal 6)"),
        (3, "its daemon stopped by itself (exit status 3)"),
    ],
)
def test_a_daemon_that_failed_is_named_in_one_line(status: int, said: str) -> None:
    with pytest.raises(RuntimeError) as raised:
        _ended(status)
    assert str(raised.value) == said


@pytest.mark.parametrize("status", [0, 130, -signal.SIGTERM, -signal.SIGHUP])
def test_a_daemon_that_was_stopped_stops_the_demo(status: int) -> None:
    """0: a clean stop; 130: a SIGINT before its event loop took the signals over."""
    with pytest.raises(KeyboardInterrupt):
        _ended(status)


def test_a_sandbox_closed_before_it_started_leaves_nothing_behind() -> None:
    """A stop held by `deferred_stop` lands once the sandbox exists and before `start`: its
    clean-up must not stop a fake STS that never ran (that raised, and left the directory)."""
    sandbox = Sandbox("127.0.0.1:0")
    sandbox.close()
    assert not sandbox.workdir.exists()


FALLBACK = """
import sys
from vaultd.demo import Sandbox
sandbox = Sandbox(f"127.0.0.1:{sys.argv[1]}", quiet_daemon=True, fallback="127.0.0.1:0")
try:
    sandbox.start()
    print(sandbox.imds_endpoint)
finally:
    sandbox.close()
"""


def test_a_port_taken_after_the_look_moves_the_demo_to_the_fallback() -> None:
    # `make demo` twice at once: both saw 9169 free, the first daemon bound it. In a process
    # of its own: moto's accounts live in the process that runs it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", FALLBACK, str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    endpoint = done.stdout.strip().splitlines()[-1]
    assert endpoint.startswith("http://127.0.0.1:") and not endpoint.endswith(f":{port}/")
    assert "was taken meanwhile" in done.stdout
