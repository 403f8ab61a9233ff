"""A sign-in is refreshed only when the AWS CLI's cache directory can take the answer
(`signin.write_refusal`): the refresh token rotates, so an answer that cannot be written would
lose the sign-in for the CLI as well as for vaultd.

The faults are real ones. Another uid comes from seteuid, around the probe alone. A full
tmpfs and a read-only mount are made in a mount namespace of the test's own; the sign-in
there runs in a child process against the loopback fakes. CI runs as root, which all of
this needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.utils import generate_login_cache_key

from tests.fakes.signin import Fakes, sso_cache_file
from vaultd.core import config, login, resolve, signin
from vaultd.core.login import AwsLogin
from vaultd.core.sso import IdentityCenter
from vaultd.errors import LoginRequired

NOBODY = 65534
AS_ROOT = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="acting as another uid and mounting need root",
)
NAMESPACE = pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare missing")


@contextmanager
def as_uid(uid: int) -> Iterator[None]:
    """Run the block with `uid` as the effective uid and gid (the real ones stay root)."""
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any uid can reach (pytest's own tmp dirs are root's alone), owned by root."""
    path = Path(tempfile.mkdtemp(prefix="vaultd-cache-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_a_writable_directory_takes_it_and_no_probe_is_left(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    assert signin.write_refusal(cache, cache / "entry.json") is None
    assert list(cache.iterdir()) == []


@AS_ROOT
def test_a_directory_of_another_uid_is_refused(open_dir: Path) -> None:
    with as_uid(NOBODY):
        refusal = signin.write_refusal(open_dir, open_dir / "entry.json")
    assert refusal == f"{open_dir} cannot be written (Permission denied)"
    assert list(open_dir.iterdir()) == []


@AS_ROOT
def test_a_sticky_directory_refuses_to_replace_an_entry_of_another_uid(open_dir: Path) -> None:
    open_dir.chmod(0o1777)
    entry = open_dir / "entry.json"
    entry.write_text("{}")
    with as_uid(NOBODY):
        refused = signin.write_refusal(open_dir, entry)
    assert refused == f"{open_dir} is sticky and this sign-in's entry belongs to uid 0"
    os.chown(entry, NOBODY, NOBODY)  # its own entry: rename(2) may replace it
    with as_uid(NOBODY):
        assert signin.write_refusal(open_dir, entry) is None
    assert [p.name for p in open_dir.iterdir()] == ["entry.json"]


@AS_ROOT
def test_the_sticky_rule_looks_at_a_symlinked_entry_itself(open_dir: Path) -> None:
    """rename(2) replaces the link, so the link's owner counts, not its target's."""
    open_dir.chmod(0o1777)
    mine = open_dir / "mine.json"
    mine.write_text("{}")
    os.chown(mine, NOBODY, NOBODY)
    entry = open_dir / "entry.json"
    entry.symlink_to(mine)  # root's link to nobody's file
    with as_uid(NOBODY):
        refused = signin.write_refusal(open_dir, entry)
    assert refused == f"{open_dir} is sticky and this sign-in's entry belongs to uid 0"
    os.lchown(entry, NOBODY, NOBODY)
    mine.unlink()  # dangling now, and nobody's: rename(2) may replace it
    with as_uid(NOBODY):
        assert signin.write_refusal(open_dir, entry) is None


@contextmanager
def append_only(path: Path) -> Iterator[None]:
    """`path` append-only (chattr +a) for the block: files can be made in it, not removed."""
    subprocess.run(["chattr", "+a", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-a", str(path)], check=True)


CHATTR = pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr (e2fsprogs) missing")


@AS_ROOT
@CHATTR
def test_an_append_only_directory_behind_a_symlink_is_refused(open_dir: Path) -> None:
    """~/.aws/sso/cache is often a symlink (dotfiles): its target's flags count."""
    real, link = open_dir / "real", open_dir / "cache"
    real.mkdir()
    link.symlink_to(real)
    with append_only(real):
        refused = signin.write_refusal(link, link / "entry.json")
    assert refused == f"{link} is immutable or append-only (chattr)"
    assert list(real.iterdir()) == []  # refused before a probe was made


@AS_ROOT
@CHATTR
def test_a_probe_that_cannot_be_removed_is_a_refusal(open_dir: Path) -> None:
    """A directory another uid may write but not read: its flags cannot be read, so the
    probe's own removal is what tells that no entry could be replaced there either."""
    open_dir.chmod(0o333)
    with append_only(open_dir), as_uid(NOBODY):
        refused = signin.write_refusal(open_dir, open_dir / "entry.json")
    assert refused == f"{open_dir} lets no file be removed or replaced (Operation not permitted)"


@AS_ROOT
def test_root_without_cap_fowner_is_held_to_the_sticky_rule(open_dir: Path) -> None:
    """rename(2) in a sticky directory asks for CAP_FOWNER, not uid 0 (capabilities(7))."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) missing")
    open_dir.chmod(0o1777)
    os.chown(open_dir, NOBODY, NOBODY)
    entry = open_dir / "entry.json"
    entry.write_text("{}")
    os.chown(entry, NOBODY - 1, NOBODY - 1)
    probe = (
        "import sys; from pathlib import Path; from vaultd.core.signin import write_refusal\n"
        "print(write_refusal(Path(sys.argv[1]), Path(sys.argv[1]) / 'entry.json'))"
    )
    argv = [sys.executable, "-c", probe, str(open_dir)]
    capless = [setpriv, "--bounding-set=-all", "--inh-caps=-all", *argv]
    shown = {
        "capless": subprocess.run(capless, capture_output=True, text=True, check=True).stdout,
        "root": subprocess.run(argv, capture_output=True, text=True, check=True).stdout,
    }
    refusal = f"{open_dir} is sticky and this sign-in's entry belongs to uid {NOBODY - 1}\n"
    assert shown == {"capless": refusal, "root": "None\n"}


# -- in a mount namespace: the cache directory is a tmpfs, full or read-only ------------------
# Mounts a tmpfs on $CACHE, copies the staged entries in, makes the fault, then runs the child.
PREPARE = """
set -e
mount -t tmpfs -o size=1m tmpfs "$CACHE"
cp "$STAGED"/*.json "$CACHE"/
case "$FAULT" in
  full) head -c 2m /dev/zero > "$CACHE/fill" 2>/dev/null || true ;;
  read-only) mount -o remount,ro "$CACHE" ;;
  append-only) chattr +a "$CACHE" ;;
  immutable-entry) chattr +i "$CACHE"/*.json ;;
  mounted-entry) over="$CACHE/../over" && cp "$CACHE"/*.json "$over"
                 mount --bind "$over" "$CACHE"/*.json ;;
  entry-bound-onto-itself) mount --bind "$CACHE"/*.json "$CACHE"/*.json ;;
esac
exec "$@"
"""

# The child: one sign-in for PROFILE through the named root, then what came of it.
CHILD = """
import hashlib, json, logging, sys, time
from pathlib import Path
from vaultd.core import config, resolve
from vaultd.core.login import AwsLogin
from vaultd.core.sso import IdentityCenter
from vaultd.errors import VaultdError

profile, cache, entry = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
if len(sys.argv) > 4:  # the disk fills after the probe looked: only a stand-in can time that
    import vaultd.core.login, vaultd.core.sso
    vaultd.core.login.write_refusal = vaultd.core.sso.write_refusal = lambda *_: None
warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("vaultd").addHandler(handler)
root = resolve.plan(config.load_profiles(), profile).signin
kind = IdentityCenter if root.kind == "sso" else AwsLogin
before = hashlib.sha256(entry.read_bytes()).hexdigest()
out = {"warnings": warnings}
try:
    creds = kind(time.time, cache_dir=cache).credentials(root)
    out["key"], out["unrefreshed"] = creds.access_key_id, creds.unrefreshed
except VaultdError as exc:
    out["error"], out["message"] = exc.code, exc.message
out["entry_rewritten"] = hashlib.sha256(entry.read_bytes()).hexdigest() != before
out["leftovers"] = sorted(p.name for p in cache.iterdir() if p.suffix == ".tmp")
print(json.dumps(out))
"""


def sign_in_with_fault(
    fault: str, profile: str, cache: Path, entry: Path, staged: Path, *, race: bool = False
) -> dict[str, object]:
    """Run the child in a new mount namespace with `fault` ("none", "full", "read-only")
    on the cache directory `cache`, whose entries are staged in `staged`; with `race`, the
    probe passes whatever it would find, as when the disk fills just after it."""
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CACHE": str(cache), "STAGED": str(staged), "FAULT": fault}
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", PREPARE, "prepare"]
        + [sys.executable, "-c", CHILD, profile, str(cache), str(entry)]
        + (["race"] if race else []),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


SSO_CACHE = Path("home/.aws/sso/cache")
LOGIN_CACHE = Path("home/.aws/login/cache")
LOGIN_SESSION = "arn:aws:iam::111122223333:user/elmerfudd"


def stage_sso(fakes: Fakes, staged: Path, expires_in: float) -> str:
    fakes.sign_in_sso(staged, expires_in=expires_in)
    return sso_cache_file(staged, "corp").name


def stage_login(fakes: Fakes, staged: Path, expires_in: float) -> str:
    fakes.sign_in_login(staged, LOGIN_SESSION, expires_in=expires_in)
    return f"{generate_login_cache_key(LOGIN_SESSION)}.json"


ROOTS = {
    "sso": ("dev-sso", SSO_CACHE, stage_sso, "IAM Identity Center corp"),
    "login": ("console", LOGIN_CACHE, stage_login, "aws login"),
}


def calls(fakes: Fakes, kind: str) -> int:
    """Refresh calls the fake answered: sso-oidc CreateToken or signin CreateOAuth2Token."""
    return fakes.create_token_calls if kind == "sso" else fakes.oauth2_calls


def sign_in_root(
    kind: str, fault: str, expires_in: float, fakes: Fakes, isolated: Path, *, race: bool = False
) -> dict[str, object]:
    """Stage `kind`'s sign-in with `expires_in` seconds left, then sign in under `fault`."""
    profile, cache, stage, _ = ROOTS[kind]
    name = stage(fakes, isolated / "staged", expires_in)
    staged, entry = isolated / "staged", isolated / cache / name
    return sign_in_with_fault(fault, profile, isolated / cache, entry, staged, race=race)


@AS_ROOT
@NAMESPACE
@pytest.mark.parametrize("kind", ["sso", "login"])
def test_a_due_refresh_is_sent_when_the_cache_can_take_it(
    kind: str, signin_config: Path, signin_fakes: Fakes, isolated: Path
) -> None:
    """The control: the same harness without a fault refreshes and rewrites the entry."""
    out = sign_in_root(kind, "none", 300, signin_fakes, isolated)  # 5 minutes left: due
    assert calls(signin_fakes, kind) == 1
    assert out["entry_rewritten"] is True
    assert "key" in out and out["unrefreshed"] is None


FAULTS = {  # what each fault is called in the warning
    "full": "{cache} cannot be written (No space left on device)",
    "read-only": "{cache} cannot be written (Read-only file system)",
    "append-only": "{cache} is immutable or append-only (chattr)",
    "immutable-entry": "this sign-in's entry in {cache} is immutable or append-only (chattr)",
    "mounted-entry": "this sign-in's entry in {cache} is a mount point",
    # The same file system on both sides: os.path.ismount cannot tell, mountinfo does.
    "entry-bound-onto-itself": "this sign-in's entry in {cache} is a mount point",
}


@AS_ROOT
@NAMESPACE
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("kind", ["sso", "login"])
def test_a_valid_sign_in_is_used_unrefreshed_when_the_cache_cannot_take_it(
    kind: str, fault: str, signin_config: Path, signin_fakes: Fakes, isolated: Path
) -> None:
    _, cache, _, label = ROOTS[kind]
    out = sign_in_root(kind, fault, 300, signin_fakes, isolated)
    assert calls(signin_fakes, kind) == 0  # the refresh token was not spent
    assert "key" in out, out
    assert out["entry_rewritten"] is False
    assert out["leftovers"] == []
    warnings = out["warnings"]
    assert isinstance(warnings, list)
    [warning] = warnings
    assert isinstance(warning, str)
    assert warning.startswith(label)
    assert FAULTS[fault].format(cache=isolated / cache) in warning
    assert "5 more minutes" in warning
    # What status shows comes from the same decision, with the time the sign-in lasts to.
    note = out["unrefreshed"]
    assert isinstance(note, str) and note.startswith(label), note
    assert f"since {FAULTS[fault].format(cache=isolated / cache)}; it lasts until " in note
    until = datetime.strptime(note.split("lasts until ")[1][:20], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(until.replace(tzinfo=UTC).timestamp() - (time.time() + 300)) < 60, note


@AS_ROOT
@NAMESPACE
@pytest.mark.parametrize("kind", ["sso", "login"])
def test_an_expired_sign_in_is_an_error_naming_the_directory_and_nothing_is_sent(
    kind: str, signin_config: Path, signin_fakes: Fakes, isolated: Path
) -> None:
    profile, cache, _, label = ROOTS[kind]
    out = sign_in_root(kind, "full", -60, signin_fakes, isolated)
    assert calls(signin_fakes, kind) == 0
    assert signin_fakes.role_calls == []
    assert out["error"] == "signin_cache_unwritable"
    message = str(out["message"])
    assert message.startswith(f"{label}: not refreshing the sign-in of {profile!r}")
    assert f"since {isolated / cache} cannot be written (No space left on device)" in message
    assert out["entry_rewritten"] is False


@AS_ROOT
@NAMESPACE
@pytest.mark.parametrize("kind", ["sso", "login"])
def test_a_refresh_that_could_not_be_saved_needs_a_person_and_says_why(
    kind: str, signin_config: Path, signin_fakes: Fakes, isolated: Path
) -> None:
    """The disk fills between the probe and botocore's write: the refresh token is spent,
    and the error says so in one line, with no traceback."""
    profile, _, _, label = ROOTS[kind]
    out = sign_in_root(kind, "full", -60, signin_fakes, isolated, race=True)
    assert calls(signin_fakes, kind) == 1
    assert out["error"] == ("sso_login_required" if kind == "sso" else "login_required")
    assert out["message"] == (
        f"{label}: the refreshed sign-in of {profile!r} could not be saved in the AWS CLI's cache "
        "(No space left on device): fix the directory, then run "
        + (
            "`aws sso login --sso-session corp`"
            if kind == "sso"
            else "`aws login --profile console`"
        )
    )


@AS_ROOT
@NAMESPACE
def test_a_token_whose_registration_expired_needs_a_person_not_a_directory_fix(
    signin_config: Path, signin_fakes: Fakes, isolated: Path
) -> None:
    """botocore never refreshes once the client registration has expired, so the cache's
    state does not matter: the person must sign in again, and is told so."""
    staged = isolated / "staged"
    name = stage_sso(signin_fakes, staged, -60)
    entry = staged / name
    token = json.loads(entry.read_text())
    token["registrationExpiresAt"] = "2020-01-01T00:00:00Z"
    entry.write_text(json.dumps(token))
    out = sign_in_with_fault(
        "full", "dev-sso", isolated / SSO_CACHE, isolated / SSO_CACHE / name, staged
    )
    assert out["error"] == "sso_login_required"
    assert signin_fakes.create_token_calls == 0


def test_a_chmod_of_an_entry_lets_a_waiting_sign_in_be_tried_again(tmp_path: Path) -> None:
    """A sign-in waiting for a person is not retried until its cache changes; fixing an
    unreadable entry's mode is such a change, as a new sign-in is."""
    cache = tmp_path / "cache"
    cache.mkdir()
    entry = cache / "entry.json"
    entry.write_text("{}")
    gate, tries = signin.SigninGate(), []

    def work() -> None:
        tries.append(1)
        raise LoginRequired("not signed in", profile="p", command="aws sso login")

    for _ in range(3):
        with pytest.raises(LoginRequired):
            gate.run("sso:corp", cache, work)
    assert len(tries) == 1  # replayed without trying
    before, mode = entry.stat().st_ctime_ns, 0o600
    while entry.stat().st_ctime_ns == before:  # until the file system's clock has ticked
        entry.chmod(mode)
        mode ^= 0o040
    with pytest.raises(LoginRequired):
        gate.run("sso:corp", cache, work)
    assert len(tries) == 2


class SteppingClock:
    """Epoch seconds that move on `step` at every reading: decisions made on two readings
    see two different instants."""

    def __init__(self, step: float) -> None:
        self.now, self.step = time.time() - step, step  # the first reading is now

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize("kind", ["sso", "login"])
def test_vaultd_and_botocore_decide_on_one_instant(
    kind: str, signin_config: Path, signin_fakes: Fakes, isolated: Path
) -> None:
    """A token a minute short of the refresh threshold, and a clock that moves two minutes at
    every reading: were botocore to read it again, it would refresh what vaultd did not probe."""
    profile, cache, stage, _ = ROOTS[kind]
    threshold = 15 * 60 if kind == "sso" else login.REUSE_ABOVE
    stage(signin_fakes, isolated / cache, threshold + 60)
    clock = SteppingClock(120)
    source = IdentityCenter if kind == "sso" else AwsLogin
    root = resolve.plan(config.load_profiles(), profile).signin
    assert root is not None
    source(clock, cache_dir=isolated / cache).credentials(root)
    assert calls(signin_fakes, kind) == 0


# Run in a mount namespace of its own: binds ENTRY onto TARGET's path (itself unless given),
# then prints write_refusal(DIR, ENTRY).
BOUND = """
import subprocess, sys
from pathlib import Path
from vaultd.core.signin import write_refusal
directory, entry, target = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
subprocess.run(["mount", "--bind", str(target), str(target)], check=True)
print(repr(write_refusal(directory, entry)))
"""


def refusal_with_a_bind(directory: Path, entry: Path, target: Path) -> str:
    paths = [str(directory), str(entry), str(target)]
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", BOUND, *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@AS_ROOT
@NAMESPACE
@pytest.mark.parametrize("name", ["cr\rdir", "tab\tand space", "back\\slash", "new\nline"])
def test_a_bound_entry_is_seen_whatever_its_directory_is_called(tmp_path: Path, name: str) -> None:
    """mountinfo escapes space, tab, newline and backslash, and leaves a CR raw."""
    directory = tmp_path / name
    directory.mkdir()
    entry = directory / "entry.json"
    entry.write_text("{}")
    expected = f"this sign-in's entry in {directory} is a mount point"
    assert refusal_with_a_bind(directory, entry, entry) == repr(expected)


@AS_ROOT
@NAMESPACE
def test_a_symlinked_entry_is_replaced_whatever_it_points_at(tmp_path: Path) -> None:
    """rename(2) replaces the link itself, so a mount behind it is no refusal."""
    directory = tmp_path / "cache"
    directory.mkdir()
    target = tmp_path / "mounted.json"
    target.write_text("{}")
    entry = directory / "entry.json"
    entry.symlink_to(target)
    assert refusal_with_a_bind(directory, entry, target) == "None"


@AS_ROOT
@NAMESPACE
def test_in_a_user_namespace_cap_fowner_covers_only_mapped_owners(open_dir: Path) -> None:
    """A rootless container: root in it has CAP_FOWNER, but not over an entry whose owner
    is not mapped into it (capable_wrt_inode_uidgid)."""
    open_dir.chmod(0o1777)
    os.chown(open_dir, 1000, 1000)
    entry = open_dir / "entry.json"
    entry.write_text("{}")
    os.chown(entry, 1001, 1001)
    probe = (
        "import sys; from pathlib import Path; from vaultd.core.signin import write_refusal\n"
        "print(write_refusal(Path(sys.argv[1]), Path(sys.argv[1]) / 'entry.json'))"
    )
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", sys.executable, "-c", probe, str(open_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    overflow = int(Path("/proc/sys/kernel/overflowuid").read_text())
    assert (
        done.stdout == f"{open_dir} is sticky and this sign-in's entry belongs to uid {overflow}\n"
    )
