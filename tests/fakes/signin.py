"""A loopback fake of the three services behind IAM Identity Center and `aws login`, which moto
does not have: sso GetRoleCredentials (the portal), sso-oidc CreateToken and signin
CreateOAuth2Token. Each checks what it receives as AWS does (the bearer token; the client
secret and refresh token; the DPoP proof's signature, method, URL and key) and rotates
refresh tokens, so a client that keeps a spent refresh token is refused.

The fake's wire formats follow botocore's service models (rest-json); tests/core/test_fakes.py
checks them against plain boto3 first. With `sts` set (moto's endpoint), role credentials are
minted by moto's AssumeRole on the role IAM Identity Center would use, so later STS calls
with them see a real identity.

`sign_in_sso` and `sign_in_login` play `aws sso login` / `aws login`: they register a grant
with the fake and write the AWS CLI's cache file with botocore's own key and format.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from botocore.utils import JSONFileCache, LoginTokenLoader, SSOTokenLoader
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

LOGIN_CLIENT = "arn:aws:signin:::devtools/same-device"


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _token(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(24)}"


def _error(status: int, kind: str, **body: str) -> web.Response:
    return web.json_response(body, status=status, headers={"x-amzn-ErrorType": kind})


@dataclass
class LoginGrant:
    client_id: str
    jwk: dict[str, str]  # the public half of the DPoP key the session is bound to
    account_id: str


@dataclass(frozen=True)
class Scripted:
    """One answer a test scripts for an operation: status, body as sent, and the error type
    header botocore reads an error's code from (None: no header, as from a proxy)."""

    status: int
    body: str
    error_type: str | None = None
    content_type: str = "application/json"


# 200s that are no JSON service's answer at all: what a proxy or a captive portal sends.
# Each service's table of garbled answers starts with these.
NOT_JSON: dict[str, Scripted] = {
    "HTML": Scripted(200, "<html>Sign in</html>", content_type="text/html"),
    "not JSON": Scripted(200, "{{{"),
}


@dataclass
class Fakes:
    """The services' state; every counter and list is there for tests to assert on."""

    clock: Callable[[], float] = time.time
    sts: str | None = None
    token_lifetime: int = 8 * 3600
    role_lifetime: int = 3600
    login_lifetime: int = 900
    # Seconds CreateToken takes, so that callers can arrive while a refresh is in flight.
    create_token_delay: float = 0.0
    access_tokens: dict[str, float] = field(default_factory=dict)
    sso_refresh: dict[str, str] = field(default_factory=dict)  # refresh token -> clientId
    clients: dict[str, str] = field(default_factory=dict)  # clientId -> clientSecret
    login_refresh: dict[str, LoginGrant] = field(default_factory=dict)
    seen_jti: set[str] = field(default_factory=set)
    create_token_calls: int = 0
    oauth2_calls: int = 0
    role_calls: list[tuple[str, str]] = field(default_factory=list)
    issued_keys: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    # Answers sent instead of the service's own, next first, per operation name
    # ("GetRoleCredentials", "CreateToken", "CreateOAuth2Token"): an outage, throttling or a
    # garbled body, as a proxy or a failing front end sends them (`script`).
    scripted: dict[str, list[Scripted]] = field(default_factory=dict)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the services ---------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/federation/credentials", self.get_role_credentials)
        app.router.add_post("/token", self.create_token)
        app.router.add_post("/v1/token", self.create_oauth2_token)
        return app

    def script(self, operation: str, answer: Scripted, times: int = 1) -> None:
        """Send `answer` to the next `times` calls of `operation` (botocore retries a 5xx or a
        throttle once here: signin.CLIENT_CONFIG), instead of the service's own answer."""
        with self._lock:
            self.scripted.setdefault(operation, []).extend([answer] * times)

    def _scripted(self, operation: str) -> web.Response | None:
        """The answer scripted next for `operation`, taken from the queue; None when none is."""
        with self._lock:
            queue = self.scripted.get(operation)
            if not queue:
                return None
            answer = queue.pop(0)
        headers = {"x-amzn-ErrorType": answer.error_type} if answer.error_type else {}
        return web.Response(
            status=answer.status,
            body=answer.body.encode(),
            content_type=answer.content_type,
            headers=headers,
        )

    def _refuse(self, why: str) -> None:
        with self._lock:
            self.refusals.append(why)

    async def get_role_credentials(self, request: web.Request) -> web.Response:
        scripted = self._scripted("GetRoleCredentials")
        if scripted is not None:
            with self._lock:
                self.role_calls.append(("scripted", "scripted"))
            return scripted
        bearer = request.headers.get("x-amz-sso_bearer_token", "")
        expires = self.access_tokens.get(bearer)
        if expires is None or expires <= self.clock():
            self._refuse("GetRoleCredentials: unknown or expired bearer token")
            return _error(401, "UnauthorizedException", message="Session token not found")
        account, role = request.query.get("account_id", ""), request.query.get("role_name", "")
        if not (account.isdigit() and len(account) == 12 and role):
            return _error(400, "InvalidRequestException", message="account_id and role_name")
        with self._lock:
            self.role_calls.append((account, role))
        creds = await asyncio.to_thread(self._role_credentials, account, role)
        with self._lock:
            self.issued_keys.append(creds["accessKeyId"])
        return web.json_response({"roleCredentials": creds})

    def _role_credentials(self, account: str, role: str) -> dict[str, Any]:
        expiration_ms = int((self.clock() + self.role_lifetime) * 1000)
        if self.sts is None:
            return {
                "accessKeyId": "ASIA" + secrets.token_hex(8).upper(),
                "secretAccessKey": secrets.token_urlsafe(30),
                "sessionToken": secrets.token_urlsafe(60),
                "expiration": expiration_ms,
            }
        import boto3

        sts = boto3.client(
            "sts",
            endpoint_url=self.sts,
            region_name="us-east-1",
            aws_access_key_id="AKIAFAKEPORTAL000000",
            aws_secret_access_key="portal",
        )
        path = "aws-reserved/sso.amazonaws.com"
        arn = f"arn:aws:iam::{account}:role/{path}/AWSReservedSSO_{role}_0a1b2c3d4e5f6a7b"
        raw = sts.assume_role(RoleArn=arn, RoleSessionName="elmerfudd")["Credentials"]
        return {
            "accessKeyId": raw["AccessKeyId"],
            "secretAccessKey": raw["SecretAccessKey"],
            "sessionToken": raw["SessionToken"],
            "expiration": expiration_ms,
        }

    async def create_token(self, request: web.Request) -> web.Response:
        scripted = self._scripted("CreateToken")
        if scripted is not None:
            with self._lock:
                self.create_token_calls += 1
            return scripted
        body = await request.json()
        await asyncio.sleep(self.create_token_delay)
        client_id, refresh = body.get("clientId"), body.get("refreshToken")
        with self._lock:
            self.create_token_calls += 1
            if body.get("grantType") != "refresh_token":
                return _error(400, "UnsupportedGrantTypeException", error="unsupported_grant_type")
            if self.clients.get(client_id) != body.get("clientSecret"):
                self.refusals.append("CreateToken: wrong client secret")
                return _error(401, "InvalidClientException", error="invalid_client")
            if self.sso_refresh.get(refresh) != client_id:
                self.refusals.append("CreateToken: unknown or spent refresh token")
                return _error(400, "InvalidGrantException", error="invalid_grant")
            del self.sso_refresh[refresh]  # rotated: the old refresh token is spent
            access, new_refresh = _token("aoa"), _token("aor")
            self.access_tokens[access] = self.clock() + self.token_lifetime
            self.sso_refresh[new_refresh] = client_id
        return web.json_response(
            {
                "accessToken": access,
                "tokenType": "Bearer",
                "expiresIn": self.token_lifetime,
                "refreshToken": new_refresh,
            }
        )

    async def create_oauth2_token(self, request: web.Request) -> web.Response:
        scripted = self._scripted("CreateOAuth2Token")
        if scripted is not None:
            with self._lock:
                self.oauth2_calls += 1
            return scripted
        body = await request.json()
        with self._lock:
            self.oauth2_calls += 1
            grant = self.login_refresh.get(body.get("refreshToken", ""))
            if body.get("grantType") != "refresh_token" or grant is None:
                self.refusals.append("CreateOAuth2Token: unknown or spent refresh token")
                return _error(400, "AccessDeniedException", error="TOKEN_EXPIRED", message="x")
            why = self._dpop_refusal(request, grant)
            if why is None and body.get("clientId") != grant.client_id:
                why = "clientId does not match the session's"
            if why is not None:
                self.refusals.append(f"CreateOAuth2Token: {why}")
                return _error(400, "ValidationException", error="invalid_request", message=why)
            del self.login_refresh[body["refreshToken"]]
            new_refresh = _token("lor")
            self.login_refresh[new_refresh] = grant
            key = "ASIA" + secrets.token_hex(8).upper()
            self.issued_keys.append(key)
        # `tokenOutput` is the operation's payload member: it is the whole body.
        return web.json_response(
            {
                "accessToken": {
                    "accessKeyId": key,
                    "secretAccessKey": secrets.token_urlsafe(30),
                    "sessionToken": secrets.token_urlsafe(60),
                },
                "tokenType": "aws_sigv4",
                "expiresIn": self.login_lifetime,
                "refreshToken": new_refresh,
            }
        )

    def _dpop_refusal(self, request: web.Request, grant: LoginGrant) -> str | None:
        """Why the DPoP proof (RFC 9449) is not acceptable, or None when it is."""
        try:
            head_b64, payload_b64, sig_b64 = request.headers["DPoP"].split(".")
            head = json.loads(_b64url_decode(head_b64))
            payload = json.loads(_b64url_decode(payload_b64))
            signature = _b64url_decode(sig_b64)
        except (KeyError, ValueError):
            return "no well-formed DPoP header"
        if head.get("typ") != "dpop+jwt" or head.get("alg") != "ES256":
            return "DPoP header is not an ES256 dpop+jwt"
        if head.get("jwk") != grant.jwk:
            return "DPoP key is not the one the session is bound to"
        x, y = (int.from_bytes(_b64url_decode(grant.jwk[c]), "big") for c in ("x", "y"))
        public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public.verify(der, f"{head_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "DPoP signature does not verify"
        if payload.get("htm") != "POST" or payload.get("htu") != f"{self.url}/v1/token":
            return "DPoP proof is for another method or URL"
        if abs(float(payload.get("iat", 0)) - time.time()) > 300:
            return "DPoP proof is stale"
        if payload.get("jti") in self.seen_jti:
            return "DPoP proof replayed"
        self.seen_jti.add(str(payload.get("jti")))
        return None

    # -- playing the AWS CLI's sign-in ----------------------------------------------------
    def sign_in_sso(
        self,
        cache_dir: Path,
        *,
        session: str | None = "corp",
        start_url: str = "https://example-corp.awsapps.com/start",
        expires_in: float = 8 * 3600,
        refreshable: bool = True,
    ) -> str:
        """`aws sso login`: a token in the cache (for the sso-session, or the legacy start URL
        when `session` is None); with `refreshable`, the registration and refresh token the
        CLI keeps with it. Returns the access token."""
        access = _token("aoa")
        token: dict[str, Any] = {
            "startUrl": start_url,
            "region": "us-east-1",
            "accessToken": access,
            "expiresAt": _iso(self.clock() + expires_in),
        }
        with self._lock:
            self.access_tokens[access] = self.clock() + expires_in
            if refreshable:
                client_id, secret, refresh = _token("cid"), _token("csec"), _token("aor")
                self.clients[client_id] = secret
                self.sso_refresh[refresh] = client_id
                token.update(
                    clientId=client_id,
                    clientSecret=secret,
                    refreshToken=refresh,
                    registrationExpiresAt=_iso(self.clock() + 90 * 86400),
                )
        cache_dir.mkdir(parents=True, exist_ok=True)
        SSOTokenLoader(JSONFileCache(str(cache_dir))).save_token(
            start_url, token, session_name=session
        )
        return access

    def sign_in_login(
        self,
        cache_dir: Path,
        session: str,
        *,
        expires_in: float = 900,
        account_id: str = "111122223333",
    ) -> str:
        """`aws login`: 15-minute credentials, a refresh token and a new DPoP key in the cache.
        Returns the access key id of the credentials written."""
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        jwk = {
            "kty": "EC",
            "x": base64.urlsafe_b64encode(numbers.x.to_bytes(32, "big")).rstrip(b"=").decode(),
            "y": base64.urlsafe_b64encode(numbers.y.to_bytes(32, "big")).rstrip(b"=").decode(),
            "crv": "P-256",
        }
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        access_key = "ASIA" + secrets.token_hex(8).upper()
        refresh = _token("lor")
        with self._lock:
            self.login_refresh[refresh] = LoginGrant(LOGIN_CLIENT, jwk, account_id)
        token = {
            "accessToken": {
                "accessKeyId": access_key,
                "secretAccessKey": secrets.token_urlsafe(30),
                "sessionToken": secrets.token_urlsafe(60),
                "accountId": account_id,
                "expiresAt": _iso(self.clock() + expires_in),
            },
            "tokenType": "aws_sigv4",
            "refreshToken": refresh,
            "idToken": "header.payload.signature",
            "clientId": LOGIN_CLIENT,
            "dpopKey": pem,
        }
        cache_dir.mkdir(parents=True, exist_ok=True)
        LoginTokenLoader(JSONFileCache(str(cache_dir))).save_token(session, token)
        return access_key


def sso_cache_file(cache_dir: Path, name: str) -> Path:
    """The file botocore keeps an sso-session's (or legacy start URL's) token in."""
    return cache_dir / (hashlib.sha1(name.encode()).hexdigest() + ".json")  # noqa: S324


class FakeServer:
    """Serves `Fakes` on 127.0.0.1 from a thread with its own event loop."""

    def __init__(self, fakes: Fakes) -> None:
        self.fakes = fakes
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.fakes.url = future.result(timeout=10)
        return self.fakes.url

    async def _start(self) -> str:
        self._runner = web.AppRunner(self.fakes.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Handlers of connections a client kept open: ended here, not left to the collector.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
