"""Shared fixtures. Every test runs with a private HOME, XDG dirs, AWS config and a file
keyring under its own temporary directory: nothing touches the real keyring or ~/.aws."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring
from moto.server import ThreadedMotoServer

from tests.e2e.harness import Daemon, reset_moto, run_vaultd
from tests.fakes.signin import Fakes, FakeServer
from tests.helpers import FakeClock
from vaultd.demo import seed_accounts

README_CONFIG = """\
[profile identity]
mfa_serial = arn:aws:iam::111122223333:mfa/elmerfudd

[profile master]
source_profile = identity
mfa_serial = arn:aws:iam::111122223333:mfa/elmerfudd
role_arn = arn:aws:iam::222233334444:role/DeveloperRole
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith(("AWS_", "VAULTD_", "XDG_", "PYTHON_KEYRING")) or name.lower().endswith(
            "_proxy"
        ):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    # Unix socket paths are limited to ~104 bytes; pytest's tmp paths can be longer.
    runtime = Path(tempfile.mkdtemp(prefix="vd-"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdgconfig"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("NO_PROXY", "*")
    backend = PlaintextKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    assert Path(backend.file_path).is_relative_to(tmp_path)
    try:
        yield tmp_path
    finally:
        keyring.set_keyring(previous)
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def aws_config(isolated: Path) -> Path:
    return shared_config(isolated, README_CONFIG)


def shared_config(isolated: Path, text: str) -> Path:
    """Write `text` as the test's ~/.aws/config (AWS_CONFIG_FILE points there)."""
    path = isolated / "home" / ".aws" / "config"
    path.write_text(text)
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- end-to-end parts: started only by the tests that ask for them ------------------------
@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    reset_moto(moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server)
    return moto_server


@pytest.fixture
def user_keys(moto: str, aws_config: Path) -> tuple[str, str]:
    """A real IAM user and access key in moto, stored with `vaultd add identity --stdin`."""
    key_id, secret = seed_accounts(moto)
    done = run_vaultd("add", "identity", "--stdin", stdin=f"{key_id}\n{secret}\n")
    assert done.returncode == 0, done.stderr
    return key_id, secret


@pytest.fixture
def daemon(isolated: Path) -> Iterator[Daemon]:
    d = Daemon(isolated / "daemon.log")
    yield d
    d.stop()


SIGNIN_CONFIG = """\
[sso-session corp]
sso_start_url = https://example-corp.awsapps.com/start
sso_region = us-east-1
sso_registration_scopes = sso:account:access

[profile dev-sso]
sso_session = corp
sso_account_id = 222233334444
sso_role_name = DeveloperAccess
region = us-east-1

[profile master-via-sso]
source_profile = dev-sso
role_arn = arn:aws:iam::222233334444:role/DeveloperRole

[profile legacy-sso]
sso_start_url = https://example-corp.awsapps.com/start
sso_region = us-east-1
sso_account_id = 222233334444
sso_role_name = ReadOnly

[profile console]
login_session = arn:aws:iam::111122223333:user/elmerfudd
region = us-east-1
"""


@pytest.fixture
def signin_config(isolated: Path) -> Path:
    """The issue's IAM Identity Center and `aws login` profiles, exactly as the CLI writes them."""
    return shared_config(isolated, SIGNIN_CONFIG)


@pytest.fixture
def signin_fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    """The sso, sso-oidc and signin fakes on loopback, found through botocore's
    service-specific endpoint variables."""
    fakes = Fakes()
    server = FakeServer(fakes)
    url = server.start()
    for service in ("SSO", "SSO_OIDC", "SIGNIN"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", url)
    yield fakes
    server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e runs the daemon as a subprocess: mark it by folder."""
    e2e = Path(__file__).parent / "e2e"
    for item in items:
        if item.path.is_relative_to(e2e):
            item.add_marker(pytest.mark.e2e)
