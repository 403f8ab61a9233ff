"""A config path that is there but cannot be read as a file is an error, never "no profiles".

botocore reads a directory, a dangling symlink, a symlink loop or a FIFO as no file at all,
and a file it may not open as an empty one; vaultd said "0 profile(s)" and "profiles: none"
for all of them (the tester's finding). The rule is `config.present`; these tests hold every
reader to it: `list`, `switch` (the daemon), `vaultd doctor` and `chain.read_shared_files`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import README_CONFIG
from tests.e2e.harness import Daemon, run_vaultd, vaultd_env
from vaultd import doctor
from vaultd.core import chain, config, resolve
from vaultd.errors import ConfigError, UnknownProfile


def _directory(path: Path) -> None:
    path.mkdir()


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "gone")


def _loop(path: Path) -> None:
    path.symlink_to(path)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


# What each kind of path is made with, and the reason every reader gives for it.
KINDS: dict[str, tuple[Callable[[Path], None], Callable[[Path], str]]] = {
    "directory": (_directory, lambda p: "is a directory"),
    "dangling symlink": (_dangling, lambda p: f"is a symlink to a missing file ({p.parent}/gone)"),
    "symlink loop": (_loop, lambda p: "Too many levels of symbolic links"),
    # Made an error too: botocore reads none of it, and opening one must never block.
    "fifo": (_fifo, lambda p: "is a FIFO, not a regular file"),
}


@pytest.fixture(params=sorted(KINDS))
def broken(request: pytest.FixtureRequest, isolated: Path) -> tuple[Path, str]:
    """The test's AWS_CONFIG_FILE made into each kind, and the error every reader says."""
    path = Path(os.environ["AWS_CONFIG_FILE"])
    make, reason = KINDS[request.param]
    make(path)
    return path, f"cannot read {path}: {reason(path)}"


def test_the_rule_refuses_what_botocore_reads_as_no_file(broken: tuple[Path, str]) -> None:
    path, said = broken
    with pytest.raises(ConfigError) as info:
        config.read_profile_map(path)
    assert info.value.message == said
    with pytest.raises(ConfigError) as info:
        config.load_profiles(path)
    assert info.value.message == said


def test_list_and_doctor_say_it_in_one_line(broken: tuple[Path, str]) -> None:
    _, said = broken
    done = run_vaultd("list", timeout=20)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"vaultd: {said}\n")
    (finding,), profiles = doctor._config()
    assert (finding.level, profiles) == (doctor.FAIL, {})
    assert finding.message == f"{said}: fix it or point AWS_CONFIG_FILE at a file you can read"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_doctors_chain_reads_the_shared_files_by_the_same_rule(isolated: Path, kind: str) -> None:
    make, reason = KINDS[kind]
    for variable in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        path = Path(os.environ[variable])
        make(path)
        files = chain.read_shared_files(os.environ)
        assert files.unopened == f"cannot read {path}: {reason(path)}", variable
        assert (files.config, files.credentials, files.unreadable) == ({}, {}, None)
        if kind == "directory":
            path.rmdir()
        else:
            path.unlink()
    # The credentials file, which no other check reads, is named by the chain check.
    make(Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]))
    first, *_ = doctor._chain(os.environ)
    assert (first.level, first.message) == (
        doctor.WARN,
        f"{chain.read_shared_files(os.environ).unopened}: SDKs here read it as empty",
    )


def test_an_absent_file_still_has_no_profiles_and_switch_says_it_does_not_exist(
    isolated: Path,
) -> None:
    path = Path(os.environ["AWS_CONFIG_FILE"])
    assert not os.path.lexists(path)
    assert config.read_profile_map(path) == {}
    profiles = config.load_profiles(path)
    assert (dict(profiles), profiles.absent) == ({}, True)
    with pytest.raises(UnknownProfile) as info:
        resolve.plan(profiles, "master")
    assert info.value.message == f"no profile 'master': {path} does not exist"
    # A file that is there and has other profiles still lists them.
    path.write_text("[profile other]\n")
    with pytest.raises(UnknownProfile) as info:
        resolve.plan(config.load_profiles(path), "master")
    assert info.value.message == f"no profile 'master' in {path} (profiles: other)"
    files = chain.read_shared_files(os.environ)
    assert (files.unopened, files.unreadable) == (None, None)


def test_the_daemon_says_why_on_switch(broken: tuple[Path, str], daemon: Daemon) -> None:
    path, said = broken
    daemon.start()
    done = run_vaultd("switch", "master", timeout=20)
    assert (done.returncode, done.stderr) == (1, f"vaultd: {said}\n")
    # Read again on each request: once gone, the file is absent and switch says so.
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink()
    done = run_vaultd("switch", "master", timeout=20)
    assert (done.returncode, done.stderr) == (
        1,
        f"vaultd: no profile 'master': {path} does not exist\n",
    )


# -- a file this process may not open: the tests run as root, who opens any file, so the
# reader runs in a child without the capabilities that bypass file permissions.
SETPRIV = shutil.which("setpriv")


def _without_read_bypass(argv: list[str]) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        if SETPRIV is None:
            pytest.skip("running as root and setpriv is not installed to drop CAP_DAC_*")
        argv = [SETPRIV, "--bounding-set=-dac_override,-dac_read_search", *argv]
    return subprocess.run(
        argv, env=vaultd_env(), capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture
def forbidden(isolated: Path) -> Path:
    path = Path(os.environ["AWS_CONFIG_FILE"])
    path.write_text(README_CONFIG)
    path.chmod(0)
    return path


def test_a_file_that_may_not_be_opened_is_permission_denied(forbidden: Path) -> None:
    said = f"cannot read {forbidden}: Permission denied"
    done = _without_read_bypass([sys.executable, "-m", "vaultd", "list"])
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"vaultd: {said}\n")
    code = (
        "import os\n"
        "from vaultd import doctor\n"
        "from vaultd.core import chain\n"
        "(found,), _ = doctor._config()\n"
        "print(found.line())\n"
        "print(chain.read_shared_files(os.environ).unopened)\n"
    )
    done = _without_read_bypass([sys.executable, "-c", code])
    assert done.stdout.splitlines() == [
        f"[FAIL] config: {said}: fix it or point AWS_CONFIG_FILE at a file you can read",
        said,
    ], done.stderr
