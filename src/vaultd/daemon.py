"""Assembling the daemons: `vaultd serve` (IMDS, container credentials and the control API
over the user's keyring) and `vaultd relay` (IMDS for containers, fed by the host's daemon),
and the one runner both use: start, run the background loops until a shutdown trigger
(SIGTERM, SIGINT, SIGHUP, or an event a test sets), stop cleanly."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from vaultd import __version__
from vaultd.client import ensure_private_dir
from vaultd.core import config
from vaultd.core.broker import Broker
from vaultd.core.childenv import SHADOWING
from vaultd.core.keystore import Keystore, backend_name
from vaultd.core.provider import Provider
from vaultd.core.sts import Boto3StsFactory, StsFactory
from vaultd.errors import VaultdError
from vaultd.host import activation, event_loop, routes
from vaultd.host.blocking import AbandoningExecutor
from vaultd.host.children import Children
from vaultd.host.coredump import CoreDumps, forbid_core_dumps
from vaultd.host.notify import Announcer, sd_notify, watchdog_interval
from vaultd.http import status as status_words
from vaultd.http.control import ControlApp
from vaultd.http.ecs import EcsApp, Grants
from vaultd.http.exec_tokens import ExecTokens
from vaultd.http.guards import Guard
from vaultd.http.imds import ImdsApp, ImdsOptions
from vaultd.http.relay import Fetch, RelayProvider, follow_host, http_fetch, socket_fetch
from vaultd.http.tokens import Tokens
from vaultd.settings import Listen, Settings, read_token
from vaultd.untrusted import printable

log = logging.getLogger("vaultd")
# SIGHUP too: the quick start's `vaultd serve &` gets one when its terminal hangs up, and
# its default action killed the daemon with no cleanup (the control socket left behind, exec
# tokens not ended, no "stopping"). vaultd has nothing to reload on it: it stops, as on SIGTERM.
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Seconds between tries of a start-up profile whose config was refused (`_plan_again`).
STARTUP_RETRY = 5.0


class ServeError(VaultdError):
    code = "serve_error"


def isolate_environment() -> None:
    """vaultd's own boto3 must never find credentials by itself, least of all from IMDS."""
    for name in SHADOWING:  # the same variables a `vaultd exec` child is kept from
        os.environ.pop(name, None)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def check_socket_free(path: Path) -> None:
    """Refuse a live daemon's socket; remove one left behind by a crash."""
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        log.info("removed a stale control socket at %s", path)
        return
    except OSError as exc:
        raise ServeError(f"cannot use the control socket {path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise ServeError(f"another vaultd is already running on {path} (`vaultd status` shows it)")


class Service(Protocol):
    """What `run` runs: `start` binds and announces (cleaning up after itself when it
    fails), `background` are the loops to run while serving, `stop` releases everything."""

    async def start(self) -> None: ...
    def background(self) -> list[Coroutine[Any, Any, None]]: ...
    async def stop(self) -> None: ...


async def run(
    service: Service, shutdown: asyncio.Event | None = None, ready: asyncio.Event | None = None
) -> None:
    """Start `service`, set `ready`, run its background loops until `shutdown` is set
    (SHUTDOWN_SIGNALS set it), then cancel them and stop the service. Start-up errors
    propagate."""
    loop = asyncio.get_running_loop()
    # Blocking calls still running at shutdown (a hung STS call) are abandoned, not awaited.
    loop.set_default_executor(AbandoningExecutor())
    shutdown = shutdown or asyncio.Event()
    for sig in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(sig, shutdown.set)
    try:
        await service.start()
        # What start-up loaded (botocore's models, aiohttp, the config: ~90,000 objects)
        # lives as long as the process. Frozen, a full collection no longer walks it: some
        # 30 ms with the loop stopped (measured here), which would land in a request's latency.
        gc.collect()
        gc.freeze()
        if ready is not None:
            ready.set()
        tasks = [asyncio.create_task(loop_) for loop_ in service.background()]
        try:
            await shutdown.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await service.stop()
    finally:
        for sig in SHUTDOWN_SIGNALS:
            loop.remove_signal_handler(sig)


def imds_options(settings: Settings) -> ImdsOptions:
    """The IMDS surface's options from the settings (built here and nowhere else). The
    owner check runs where the platform supports it unless the settings turn it off."""
    base = ImdsOptions()
    if not settings.uid_check:
        log.warning(
            "the owner-uid check is off (--no-uid-check, VAULTD_UID_CHECK=false or "
            "uid_check = false): every local user's processes can now read your credentials"
        )
    token_file = settings.relay_token_file
    return replace(
        base,
        tokens_required=settings.imds_tokens == "required",
        uid_check=base.uid_check and settings.uid_check,
        allow_uids=base.allow_uids | frozenset(settings.allow_uids),
        serve_extended=settings.imds_extended,
        relay_token=read_token(token_file) if token_file is not None else None,
    )


class Daemon:
    """`vaultd serve`. `sockets` are listeners handed over by the service manager (names
    "imds" and "control"); without them the daemon binds what the settings name."""

    def __init__(
        self,
        settings: Settings,
        *,
        sts_factory: StsFactory | None = None,
        clock: Callable[[], float] = time.time,
        sockets: Mapping[str, socket.socket] | None = None,
    ) -> None:
        self.settings = settings
        self.sockets = sockets
        self.clock = clock
        self.keystore = Keystore()
        self.config_path = config.config_path()
        # credential_process, mfa_process and ykman: stopped with the daemon (`stop`).
        self.children = Children()
        self.provider = Provider(
            load_profiles=lambda: config.load_profiles(self.config_path),
            keystore=self.keystore,
            sts_factory=sts_factory or Boto3StsFactory(),
            clock=clock,
            session_duration=settings.session_duration,
            ykman_default=settings.mfa_ykman,
            runner=self.children,
        )
        self.announcer = Announcer(desktop=settings.notify)
        self.broker = Broker(self.provider, clock, announcer=self.announcer)
        self.allow_cidrs = settings.allow_cidrs
        self.grants = Grants(clock)
        self.exec_tokens = ExecTokens(self.grants, self.broker)
        self.imds = ImdsApp(
            self.broker,
            Tokens(clock),
            # Replaced once the listener is bound and its real address known.
            Guard.for_listener(settings.listen.host, settings.listen.port, self.allow_cidrs),
            imds_options(settings),
            ecs=EcsApp(self.broker, self.grants),
        )
        self.control = ControlApp(
            self.broker, self.info, exec_tokens=self.exec_tokens, endpoint=lambda: self.endpoint
        )
        self.listeners: list[str] = []
        self.bound = ""  # what the IMDS endpoint hides: a wildcard address bound
        self.endpoint = settings.endpoint
        self.started = clock()
        self._runners: list[web.AppRunner] = []
        self._socket_created = False
        self._ready = False
        self.control_path = settings.control_socket
        # Set by `serve`, which forbids core dumps for the whole process.
        self.core_dumps: CoreDumps | None = None

    def info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "listeners": self.listeners,
            "endpoint": self.endpoint,
            "imds_tokens": self.settings.imds_tokens,
            "control_socket": str(self.control_path),
            "config_file": str(self.config_path),
            "uptime": int(self.clock() - self.started),
            "sts_calls": self.provider.sts_calls,
            "core_dumps": self.core_dumps.describe() if self.core_dumps else "not changed",
            "owner_check": self.imds.owner_lookup,
            "event_loop": event_loop.describe(asyncio.get_running_loop()),
        }

    async def start(self) -> None:
        """Bind the listeners, activate the configured profile, tell systemd we are ready
        (once the listeners are bound, not once credentials arrive: that may need MFA)."""
        handed = activation.inherited() if self.sockets is None else self.sockets
        try:
            await self._start_imds(handed.get("imds"))
            await self._start_control(handed.get("control"))
        except BaseException:
            await self.stop()
            raise
        await self._activate_profile()
        sd_notify(f"READY=1\nSTATUS={status_words.message(self.broker.status())}")
        self._ready = True

    def background(self) -> list[Coroutine[Any, Any, None]]:
        loops = [self.broker.run()]
        interval = watchdog_interval()
        if interval is not None:
            loops.append(_watchdog(interval))
        if self.settings.profile and self.broker.startup_error is not None:
            loops.append(self._plan_again(self.settings.profile))
        return loops

    async def _plan_again(self, profile: str) -> None:
        """The start-up `profile`, planned again every STARTUP_RETRY seconds while its
        config is refused and nobody has switched, then served. A daemon started at login
        on a file with a mistake in it serves once the file is mended, with no restart
        (before, the first failure stood until a `switch`). A switch ends this, from the
        moment it begins (`Broker.chosen`): a person chose, and a late start-up profile must
        not replace their choice."""
        while not self.broker.chosen:
            await asyncio.sleep(STARTUP_RETRY)
            try:
                plan = await asyncio.to_thread(self.provider.plan, profile)
            except VaultdError as exc:
                self.broker.startup_error = exc
                continue
            if not self.broker.chosen:  # a switch may have begun while the file was read
                self.broker.startup_error = None
                self.broker.activate(profile, plan)
                log.info("the config can be read now: serving %s", profile)
            return

    async def _start_imds(self, sock: socket.socket | None) -> None:
        listen = self.settings.listen
        try:
            if sock is not None:
                listener = await self.imds.start(sock=sock)
            else:
                listener = await self.imds.start(listen.host, listen.port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(
                    f"{listen} is already in use: stop what listens there or pass --listen"
                ) from None
            raise ServeError(f"cannot listen on {listen}: {exc.strerror}") from None
        bound = (
            listener.sockets[0].getsockname() if listener.sockets else (listen.host, listen.port)
        )
        host, port = str(bound[0]), int(bound[1])
        self.endpoint = replace(self.settings, listen=Listen(host, port)).endpoint
        # The Host check must name the address actually bound (port 0, or systemd's socket).
        self.imds.guard = Guard.for_listener(host, port, self.allow_cidrs)
        # The endpoint names loopback for a wildcard address (SDKs cannot dial 0.0.0.0):
        # say what is bound as well, since every interface is reachable then.
        # asyncio sets IPV6_V6ONLY on an IPv6 listener: [::] takes no IPv4 connection.
        self.bound = {
            "0.0.0.0": " (bound to 0.0.0.0: every interface)",  # noqa: S104
            "::": " (bound to [::]: every interface, IPv6 only)",
        }.get(host, "")
        activated = " (socket-activated)" if sock else ""
        self.listeners.append(f"imds {self.endpoint}{self.bound}{activated}")

    async def _start_control(self, sock: socket.socket | None) -> None:
        control_runner = self.control.runner()
        await control_runner.setup()
        self._runners.append(control_runner)
        if sock is not None:
            # systemd made the socket (0600 in a 0700 directory) and removes it; not ours to.
            await web.SockSite(control_runner, sock).start()
            self.control_path = Path(str(sock.getsockname()))
            self.listeners.append(f"control unix:{self.control_path} (socket-activated)")
            return
        sock_path = self.settings.control_socket
        ensure_private_dir(sock_path.parent)
        check_socket_free(sock_path)
        old_umask = os.umask(0o177)
        try:
            await web.UnixSite(control_runner, str(sock_path)).start()
        finally:
            os.umask(old_umask)
        self._socket_created = True
        sock_path.chmod(0o600)
        self.listeners.append(f"control unix:{sock_path}")

    async def _activate_profile(self) -> None:
        if self.settings.profile:
            try:
                plan = await asyncio.to_thread(self.provider.plan, self.settings.profile)
            except VaultdError as exc:
                self.broker.startup_error = exc
                log.error("%s", exc.message)  # noqa: TRY400 - a config mistake, not a bug
            else:
                self.broker.activate(self.settings.profile, plan)
        log.info(
            "vaultd %s serving IMDS on %s%s (tokens %s), control on %s, keyring %s",
            __version__,
            self.endpoint,
            self.bound,
            self.settings.imds_tokens,
            self.control_path,
            backend_name(),
        )
        if self.core_dumps is not None:  # after the listeners: a bad --listen is its error alone
            log.info("core dumps %s", self.core_dumps.describe())
        log.info("event loop %s", event_loop.describe(asyncio.get_running_loop()))

    async def stop(self) -> None:
        """Stop serving and remove the control socket we made; safe to call twice."""
        self.exec_tokens.close()
        if self._ready:
            log.info("stopping")
            sd_notify("STOPPING=1")
            self._ready = False
        await self.imds.shutdown()
        # Before the broker waits for its refreshes: one may wait on a hung child.
        if stopped := self.children.stop():
            log.info("stopped %d credential or MFA code process(es) still running", stopped)
        await self.broker.close()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._socket_created:
            self.settings.control_socket.unlink(missing_ok=True)
            self._socket_created = False


async def _watchdog(interval: float) -> None:
    while True:
        sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval)


class Relay:
    """`vaultd relay`: the IMDS surface for containers, its credentials fetched from the
    host's daemon by `fetch`. Peers are admitted as by `vaultd serve` (`ImdsApp.admit`):
    containers on the allowed network, which have no socket on the relay's machine, by
    their address; a peer whose socket is on it (loopback, or one of its own addresses)
    only when the relay's own uid owns that socket. The network's gateways (the host,
    `routes.gateways`, read at start) are refused."""

    def __init__(
        self,
        fetch: Fetch,
        listen: Listen,
        allow_cidrs: tuple[str, ...],
        interval: float,
        *,
        clock: Callable[[], float] = time.time,
        gateways: Iterable[str] | None = None,
    ) -> None:
        if gateways is None:
            gateways = routes.gateways()
        self.listen = listen
        self.allow_cidrs = allow_cidrs
        self.interval = interval
        self.provider = RelayProvider(fetch, clock)
        self.broker = Broker(self.provider, clock)
        self.gateways = sorted(gateways)
        guard = Guard.for_listener(listen.host, listen.port, allow_cidrs, self.gateways)
        # The owner check as serve makes it by default (Linux; the relay's own uid): run
        # anywhere but a container of its own (on the host, on a bridge address), the
        # relay's machine has other users, and they reach it over loopback too.
        self.imds = ImdsApp(self.broker, Tokens(clock), guard, ImdsOptions())

    async def start(self) -> None:
        try:
            await self.imds.start(self.listen.host, self.listen.port)
        except OSError as exc:
            await self.stop()
            raise ServeError(f"cannot listen on {self.listen}: {exc.strerror}") from None
        log = logging.getLogger("vaultd.relay")
        log.info(
            "relaying the host's credentials on %s to %s", self.listen, ", ".join(self.allow_cidrs)
        )
        if self.gateways:
            log.info("refusing the network's gateways (the host): %s", ", ".join(self.gateways))
        log.info("owner check: %s", self.imds.owner_lookup)

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self.broker.run(), follow_host(self.broker, self.provider, self.interval)]

    async def stop(self) -> None:
        await self.imds.shutdown()
        await self.broker.close()


class EscapingFormatter(logging.Formatter):
    """A log formatter that escapes every record's message with `printable` (terminal form),
    so no profile name, config value or upstream error can forge a line or carry an escape
    sequence, without each log call having to remember it. A traceback keeps its lines, each
    escaped the same way (its last line holds the exception's message, which may carry text
    from outside); a newline inside that message still starts a line of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message, None, ascii=False)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return "\n".join(printable(line, None, ascii=False) for line in text.split("\n"))


def configure_logging(level: str, name: str) -> None:
    """Log to stderr as `TIME NAME LEVEL MESSAGE`, every message escaped (`EscapingFormatter`:
    profile names and upstream errors are text from outside). botocore's own narration is
    kept out: every request at DEBUG, and its sign-in providers' traceback for each failed
    refresh ("Refreshing token failed during the mandatory refresh period"), which vaultd
    turns into one line of its own (core.signin.reading_cache)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler])
    logging.getLogger("botocore").setLevel(logging.WARNING)
    for noisy in ("botocore.tokens", "botocore.credentials"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def serve(settings: Settings) -> int:
    """Run `vaultd serve` until SIGTERM, SIGINT or SIGHUP; exit status 0."""
    isolate_environment()
    dumps = forbid_core_dumps()  # before any secret is read; said once the listeners are up
    daemon = Daemon(settings)
    daemon.core_dumps = dumps
    event_loop.choose(settings.event_loop).run(run(daemon))
    return 0


def relay(
    listen: Listen,
    allow_cidrs: tuple[str, ...],
    interval: float,
    *,
    control_socket: Path | None = None,
    upstream: tuple[str, Path] | None = None,
) -> int:
    """Run `vaultd relay` until SIGTERM, SIGINT or SIGHUP: credentials from the host's daemon over
    `control_socket`, or over HTTP from `upstream` (URL, token file) on Docker Desktop."""
    if upstream is not None:
        url, token_file = upstream
        fetch = http_fetch(url, read_token(token_file))
    elif control_socket is not None:
        fetch = socket_fetch(control_socket)
    else:
        raise ServeError("the relay needs the host's control socket or an upstream URL")
    log.info("core dumps %s", forbid_core_dumps().describe())  # before any secret arrives
    event_loop.choose().run(run(Relay(fetch, listen, allow_cidrs, interval)))
    return 0
