"""`vaultd doctor`: every link in the chain from config to an SDK, one line each with a fix."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
from botocore.compat import HAS_CRT
from botocore.exceptions import BotoCoreError
from botocore.utils import (
    InstanceMetadataFetcher,
    get_environ_proxies,
    get_login_token_cache_directory,
)

from vaultd import settings
from vaultd.client import ControlClient, ControlError, DaemonNotRunning
from vaultd.core import chain, config, resolve, rules
from vaultd.core.childenv import REGION_VARIABLES
from vaultd.core.keystore import Keystore, backend_name
from vaultd.core.login import cached_session, session_entry
from vaultd.core.signin import write_refusal
from vaultd.core.sso import cached_token, refreshable, sso_cache_dir, token_entry
from vaultd.documents import RUNNING, MalformedDocument, checked
from vaultd.errors import LoginRequired, VaultdError
from vaultd.host.peer_owner import listener_owner, owner_lookup
from vaultd.untrusted import printable, profile_words

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Finding:
    level: str
    topic: str
    message: str

    def line(self) -> str:
        """The finding as doctor prints it: names from config files and the environment are
        in its message, so control characters are escaped (`printable`)."""
        return printable(f"[{self.level:>4}] {self.topic}: {self.message}", None, ascii=False)


def _unusable(path: Path) -> str | None:
    """Why `path` (the shared config file SDKs read) cannot be one, with the fix, or None
    when it is absent or a file that can be read. The rule is the daemon's and the command
    line's (`config.present`): a directory, an unreadable file, a dangling symlink or a FIFO
    is an error there, and SDKs read it as empty, so advice to add lines to it is wrong."""
    try:
        config.present(path)
    except VaultdError as exc:
        if os.environ.get("AWS_CONFIG_FILE"):
            return f"{exc.message}: fix it or point AWS_CONFIG_FILE at a file you can read"
        return f"{exc.message}: fix it or set AWS_CONFIG_FILE to a file you can read"
    return None


def _config() -> tuple[list[Finding], dict[str, config.Profile]]:
    """The config file's state, then one FAIL per profile with a wrong value (each other
    profile still works, so the rest of the checks run on those)."""
    path = config.config_path()
    unusable = _unusable(path)
    if unusable is not None:
        return [Finding(FAIL, "config", unusable)], {}
    if not path.exists():
        return [Finding(WARN, "config", f"{path} does not exist: create it with your profiles")], {}
    try:
        profiles = config.load_profiles(path)
    except VaultdError as exc:
        # The file as a whole: its message names the line or key, and says what to do.
        return [Finding(FAIL, "config", exc.message)], {}
    found = [Finding(OK, "config", f"{path} has {len(profiles)} profile(s)")]
    for message in profiles.problems().values():
        found.append(Finding(FAIL, "config", f"{message}: fix that line"))
    return found, profiles.usable()


def _keyring(profiles: dict[str, config.Profile]) -> Iterator[Finding]:
    store = Keystore(timeout=5)
    try:
        stored = set(store.profiles_with_keys())
    except VaultdError as exc:
        yield Finding(FAIL, "keyring", f"{backend_name()}: {exc.message}")
        return
    yield Finding(OK, "keyring", f"{backend_name()} is usable ({len(stored)} profile(s) with keys)")
    sources = {p.source_profile for p in profiles.values() if p.source_profile}
    for name in sorted(sources):
        root = profiles.get(name)
        if root is None or root.source_profile or root.credential_process:
            continue
        if resolve.signin_root(root) is not None:
            continue  # signs in through the AWS CLI: see _signins
        if name in stored:
            yield Finding(OK, "keys", f"{name}: stored")
        else:
            yield Finding(
                FAIL, "keys", f"{name}: no keys stored: run `vaultd add {profile_words(name)}`"
            )


def _signins(profiles: dict[str, config.Profile], now: float) -> Iterator[Finding]:
    """For each IAM Identity Center / `aws login` root: is the AWS CLI's cache signed in, and
    can it take a refresh? Read with botocore's own loaders; nothing is refreshed or sent, and
    the only write is `write_refusal`'s probe file, removed at once."""
    roots = {
        root
        for p in profiles.values()
        if not p.source_profile and (root := resolve.signin_root(p)) is not None
    }
    for root in sorted(roots, key=lambda r: (r.kind, r.label, r.profile)):
        fix = f"run `{root.command}`"
        if root.kind == "login" and not HAS_CRT:
            yield Finding(FAIL, "sign-in", f"{root.profile}: pip install 'botocore[crt]'")
            continue
        # The same reading the daemon does before every use of the cache.
        try:
            if root.kind == "login":
                yield from _login(root, now)
                continue
            start_url = profiles[root.profile].sso_start_url or ""
            token = cached_token(root, start_url, sso_cache_dir())
        except LoginRequired as exc:
            yield Finding(FAIL, "sign-in", exc.message)
            continue
        if token is None:
            yield Finding(FAIL, "sign-in", f"{root.label}: not signed in: {fix}")
            continue
        left = token[0] - now
        renewable = refreshable(root, token, now)  # as the daemon decides
        entry = token_entry(sso_cache_dir(), start_url, root.session)
        refusal = write_refusal(sso_cache_dir(), entry) if renewable else None
        if left > 0:
            yield Finding(OK, "sign-in", f"{root.label}: signed in ({int(left // 60)}m left)")
        elif not renewable:
            # Nothing can be served from it: a failure, as an unrefreshable cache is.
            yield Finding(FAIL, "sign-in", f"{root.label}: sign-in expired: {fix}")
        elif refusal is None:
            yield Finding(OK, "sign-in", f"{root.label}: token expired, vaultd refreshes it")
        yield from _unrefreshable(root.label, left <= 0, refusal)


def _login(root: resolve.SigninRoot, now: float) -> Iterator[Finding]:
    """The `aws login` session of `root`: cached, and renewable by vaultd when due."""
    login_dir = Path(get_login_token_cache_directory())
    expiry = cached_session(root, login_dir)
    if expiry is None:
        yield Finding(FAIL, "sign-in", f"{root.profile}: not signed in: run `{root.command}`")
        return
    refusal = write_refusal(login_dir, session_entry(login_dir, root.session))
    if expiry > now or refusal is None:
        yield Finding(OK, "sign-in", f"{root.profile}: {root.label} session cached")
    yield from _unrefreshable(f"{root.profile} ({root.label})", expiry <= now, refusal)


def _unrefreshable(who: str, expired: bool, refusal: str | None) -> Iterator[Finding]:
    """What it means that the AWS CLI's cache cannot take a refresh now (`write_refusal`):
    while the sign-in is valid vaultd serves it unrefreshed, a warning; once it has expired,
    nothing can be served, a failure."""
    if refusal is None:
        return
    if expired:
        yield Finding(
            FAIL,
            "sign-in",
            f"{who}: expired, and vaultd cannot refresh it, since {refusal}: fix the directory",
        )
    else:
        yield Finding(
            WARN,
            "sign-in",
            f"{who}: vaultd cannot refresh it when due, since {refusal}: fix the directory",
        )


def _daemon(conf: settings.Settings) -> tuple[Finding, dict[str, Any] | None]:
    try:
        status = checked(
            ControlClient(conf.control_socket, timeout=5).status(), RUNNING, "status document"
        )
    except MalformedDocument as exc:
        return Finding(FAIL, "daemon", exc.message), None
    except DaemonNotRunning:
        return Finding(
            FAIL, "daemon", "not running: `vaultd serve`, or `vaultd service install`"
        ), None
    except ControlError as exc:
        return Finding(FAIL, "daemon", f"answers badly: {exc}"), None
    listeners = ", ".join(status.get("listeners", []))
    state = f"{status.get('state')} ({status.get('message')})"
    level = OK if status.get("state") == "ok" else WARN
    return Finding(level, "daemon", f"pid {status.get('pid')}, {listeners}; {state}"), status


def _squatter(conf: settings.Settings) -> Iterator[Finding]:
    """With the daemon stopped, its port is free for any local user: whatever listens where
    the SDKs look (the listen address, this shell's endpoint) can hand them credentials of
    its choosing. Linux only, where the owner of a socket can be looked up."""
    if not sys.platform.startswith("linux"):
        return
    places = {(settings.loopback_for(conf.listen.host), conf.listen.port)}
    shell = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    with contextlib.suppress(ValueError):  # a malformed endpoint is `_endpoint`'s finding
        url = urllib.parse.urlsplit(shell or "")
        if url.hostname:
            places.add((url.hostname, url.port or 80))
    lookup = owner_lookup()
    for host, port in sorted(places):
        uid = listener_owner(lookup, (host, port))
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        if uid is None:
            continue
        if uid == os.geteuid():
            yield Finding(
                WARN,
                "listener",
                f"a process of yours listens on {where}, and it is not this vaultd",
            )
        else:
            yield Finding(
                FAIL,
                "listener",
                f"uid {uid} listens on {where}, where SDKs look for vaultd: it can hand them "
                f"credentials of its choosing; find it with `ss -ltnpe 'sport = :{port}'`",
            )


def _link_local(run: Callable[..., Any]) -> Iterator[Finding]:
    if sys.platform.startswith("linux"):
        argv = ["ip", "-o", "addr", "show", "dev", "lo"]
    elif sys.platform == "darwin":
        argv = ["ifconfig", "lo0"]
    else:
        return
    try:
        shown = run(argv, capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        shown = ""
    if "169.254.169.254" in shown:
        yield Finding(OK, "network", "169.254.169.254 is on the loopback interface")
    else:
        yield Finding(
            WARN,
            "network",
            "169.254.169.254 is not on lo: only SDKs that read "
            "AWS_EC2_METADATA_SERVICE_ENDPOINT find vaultd (`sudo vaultd network install`)",
        )
        return
    try:
        with socket.create_connection(("169.254.169.254", 80), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
            head = sock.recv(4096).decode("latin-1")
    except OSError as exc:
        yield Finding(FAIL, "network", f"nothing answers on 169.254.169.254:80 ({exc.strerror})")
        return
    server = "EC2ws" if "Server: EC2ws" in head else "something else"
    yield Finding(
        OK if server == "EC2ws" else FAIL, "network", f"169.254.169.254:80 answers as {server}"
    )


def _endpoint(conf: settings.Settings, status: dict[str, Any] | None) -> Iterator[Finding]:
    current = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    expected = str(status["endpoint"]) if status else conf.endpoint
    if current is None:
        yield Finding(
            WARN, "shell", 'AWS_EC2_METADATA_SERVICE_ENDPOINT is unset: eval "$(vaultd env)"'
        )
    elif current.rstrip("/") != expected.rstrip("/"):
        yield Finding(
            FAIL, "shell", f"AWS_EC2_METADATA_SERVICE_ENDPOINT={current}, vaultd is at {expected}"
        )
    elif not current.endswith("/"):
        yield Finding(WARN, "shell", "the endpoint lacks its trailing /, which some CLIs need")
    else:
        yield Finding(OK, "shell", f"AWS_EC2_METADATA_SERVICE_ENDPOINT={current}")


def _region() -> Finding:
    """Whether SDKs started from this shell find a usable region: `AWS_REGION` (read by most
    SDKs), else botocore's own lookup (`AWS_DEFAULT_REGION`, then `region` in the shell's
    profile), checked with the rule the config check uses (`rules`, botocore's own). The AWS
    CLI v1 and boto3 never ask IMDS for one, so without these they fail with "You must
    specify a region" even though credentials are served."""
    session = botocore.session.Session()
    try:
        region = os.environ.get("AWS_REGION") or session.get_config_variable("region")
    except BotoCoreError as exc:
        return Finding(FAIL, "region", f"botocore cannot read this shell's profile: {exc}")
    profile = session.profile or "default"
    section = "[default]" if profile == "default" else f"[profile {profile}]"
    if region:
        problem = rules.problem("region", str(region))
        if problem is None:
            return Finding(OK, "region", f"SDKs in this shell use {region}")
        source = next((v for v in REGION_VARIABLES if os.environ.get(v)), None)
        where = f"{source}=" if source else f"region under {section} = "
        return Finding(FAIL, "region", f"{where}{region} {problem}")
    path = config.config_path()
    unusable = _unusable(path)
    if unusable is not None:
        return Finding(WARN, "region", f"SDKs in this shell find no region: {unusable}")
    return Finding(
        WARN,
        "region",
        f"SDKs in this shell find no region: add `region = us-east-1` (yours) under {section} "
        f"in {path}, or export AWS_REGION",
    )


def _chain(env: Mapping[str, str]) -> Iterator[Finding]:
    """What SDKs started from this shell use instead of vaultd: everything in the
    environment and the shared files that answers the credential chain before IMDS, in
    botocore's order (`core.chain`), each with its fix."""
    files = chain.read_shared_files(env)
    if files.unopened and _unusable(Path(files.config_path)) is None:
        # The credentials file (`_config` says the config's). Not ahead of vaultd: botocore
        # reads such a file as empty (`config.present`).
        yield Finding(WARN, "chain", f"{files.unopened}: SDKs here read it as empty")
    ahead = chain.ahead_of(chain.IMDS, env, files)
    if not ahead:
        yield Finding(OK, "chain", "nothing in this shell answers the SDKs before IMDS")
    for found in ahead:
        yield Finding(FAIL, "chain", f"{found.found}, so SDKs here never ask vaultd: {found.fix}")


# What makes botocore's IMDS fetch in this shell differ from the daemon's view, each with
# the variable and the config key botocore reads it from (botocore.configprovider).
IMDS_TIMEOUT = ("AWS_METADATA_SERVICE_TIMEOUT", "metadata_service_timeout")
IMDS_ATTEMPTS = ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "metadata_service_num_attempts")
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
NO_PROXY_FIX = "export NO_PROXY=127.0.0.1,169.254.169.254"


def _fetch(endpoint: str) -> Finding:
    """Fetch role credentials from `endpoint` the way botocore in this shell would: its
    IMDS timeout and attempts (variables or config, as `create_credential_resolver` reads
    them) and its proxy variables; on failure, name the setting that caused it."""
    # The daemon is checked whatever this shell says: `_chain` names AWS_EC2_METADATA_DISABLED.
    env = {k: v for k, v in os.environ.items() if k != "AWS_EC2_METADATA_DISABLED"}
    session = botocore.session.Session()
    try:
        timeout = session.get_config_variable(IMDS_TIMEOUT[1])
        attempts = session.get_config_variable(IMDS_ATTEMPTS[1])
    except (BotoCoreError, ValueError) as exc:
        return Finding(FAIL, "fetch", f"botocore cannot read this shell's IMDS settings: {exc}")
    creds: dict[str, Any] = {}
    failure = "botocore got no credentials"
    try:
        fetcher = InstanceMetadataFetcher(
            timeout=timeout, num_attempts=attempts, base_url=endpoint, env=env
        )
        creds = fetcher.retrieve_iam_role_credentials()
    except Exception as exc:  # botocore raises many kinds; the name is enough here
        failure = f"botocore's IMDS fetcher failed: {type(exc).__name__}"
    if creds:
        return Finding(
            OK,
            "fetch",
            f"botocore got role {creds.get('role_name')} (key ****{creds['access_key'][-4:]}, "
            f"expires {creds['expiry_time']})",
        )
    return Finding(FAIL, "fetch", f"{failure}: {_fetch_cause(endpoint, timeout, attempts)}")


def _fetch_cause(endpoint: str, timeout: float, attempts: int) -> str:
    """The shell setting that stops botocore's IMDS fetch, with its fix, or where to look."""

    def source(setting: tuple[str, str]) -> str:
        variable, key = setting
        value = os.environ.get(variable)
        return f"{variable}={value}" if value is not None else f"{key} in your config"

    if attempts < 1:
        return f"{source(IMDS_ATTEMPTS)} makes botocore never ask IMDS: unset it (default 1)"
    if timeout <= 0:
        return f"{source(IMDS_TIMEOUT)} gives botocore no time to ask IMDS: unset it (default 1)"
    if get_environ_proxies(endpoint):
        variable = next((v for v in PROXY_VARIABLES if os.environ.get(v)), "a proxy variable")
        return f"{variable} sends botocore's IMDS requests to a proxy: {NO_PROXY_FIX}"
    return "`vaultd status` says why"


def run(run_cmd: Callable[..., Any] = subprocess.run) -> int:
    conf = settings.load()
    findings: list[Finding] = []
    found, profiles = _config()
    findings += found
    findings += list(_keyring(profiles))
    findings += list(_signins(profiles, time.time()))
    daemon, status = _daemon(conf)
    findings.append(daemon)
    elsewhere = config.another_file(status.get("config_file")) if status else None
    if elsewhere is not None:
        findings.append(Finding(WARN, "config", elsewhere))
    if status is None:
        findings += list(_squatter(conf))
    findings += list(_link_local(run_cmd))
    findings += list(_endpoint(conf, status))
    findings.append(_region())
    findings += list(_chain(os.environ))
    if status is not None:
        findings.append(_fetch(str(status["endpoint"])))
    for finding in findings:
        print(finding.line())
    return 1 if any(f.level == FAIL for f in findings) else 0
