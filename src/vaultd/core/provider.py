"""Turning a profile into credentials: stored keys -> GetSessionToken (MFA) -> AssumeRole chain.

Everything here is synchronous and blocking (keyring and boto3 both are); the broker runs it
in a worker thread. Every STS call goes through `sts.Sts` (the injected client factory, the
call count and the error translation live there).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from vaultd.core import inventory, mfa, process, resolve, schedule
from vaultd.core.config import Profile
from vaultd.core.credentials import AccessKeys, Credentials, Source, mask_key_id
from vaultd.core.keystore import CachedSession, Keystore, no_keys
from vaultd.core.login import AwsLogin
from vaultd.core.sso import IdentityCenter
from vaultd.core.sts import STALE_SESSION_CODES, Sts, StsFactory
from vaultd.errors import MfaRequired, NoKeys, StsError

MIN_SESSION_LEFT = schedule.MIN_SESSION_LEFT
DEFAULT_SESSION_DURATION = 12 * 3600
# An automatic code source that repeats its last code is asked again after a pause.
AUTO_CODE_ATTEMPTS = 3
AUTO_CODE_WAIT = 10.0
# GetFederationToken needs a policy; the console session gets what the keys' user has.
FEDERATION_POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
)
log = logging.getLogger("vaultd.provider")

Clock = Callable[[], float]


class Provider:
    def __init__(
        self,
        *,
        load_profiles: Callable[[], Mapping[str, Profile]],
        keystore: Keystore,
        sts_factory: StsFactory,
        clock: Clock,
        session_duration: int = DEFAULT_SESSION_DURATION,
        env: Mapping[str, str] | None = None,
        ykman_default: bool = False,
        runner: mfa.Runner = subprocess.run,
        sleep: Callable[[float], None] = time.sleep,
        identity_center: IdentityCenter | None = None,
        aws_login: AwsLogin | None = None,
    ) -> None:
        self.load_profiles = load_profiles
        self.keystore = keystore
        self.sts = Sts(sts_factory, clock)
        self.clock = clock
        self.session_duration = session_duration
        env = os.environ if env is None else env
        self.env_region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        self.ykman_default = ykman_default
        self.runner = runner
        self.sleep = sleep
        # Roots that sign in through the AWS CLI's caches instead of stored keys.
        self.identity_center = identity_center or IdentityCenter(clock)
        self.aws_login = aws_login or AwsLogin(clock)
        # The last code each automatic source gave per device: never sent twice.
        self._last_auto_code: dict[str, str] = {}

    @property
    def sts_calls(self) -> int:
        """STS calls made so far: shown in status, and what the benchmark reads."""
        return self.sts.calls

    def plan(self, name: str) -> resolve.Plan:
        return resolve.plan(self.load_profiles(), name, env_region=self.env_region)

    def credentials(self, name: str, mfa_code: str | None = None) -> Credentials:
        """Fresh credentials for `name`; raises MfaRequired when a code is needed and absent.

        A code that is given is always used for a new MFA session: the person typed it
        to renew, perhaps before the cached session ran out.
        """
        plan = self.plan(name)
        source = self._root_keys(plan)
        # A sign-in left unrefreshed stays worth saying whatever is minted from it.
        unrefreshed = source.unrefreshed if isinstance(source, Credentials) else None
        # The keyring item the current source came from, if it came from the cache.
        cached: str | None = None
        source_expiration: float | None = None
        roles = plan.roles
        # Temporary credentials (credential_process, a sign-in) are already a session: used
        # as they are, and none ends that a code could renew.
        if plan.session and not isinstance(source, Credentials):
            source, hit = self._session(plan, source, mfa_code)
            cached = plan.root if hit else None
            if plan.mfa_serial is not None:
                source_expiration = source.expiration
        elif (
            isinstance(source, Credentials)
            and plan.mfa_serial is not None
            and roles
            and not any(step.mfa_serial for step in roles)  # one code, one AssumeRole
        ):
            # Nor can they make an MFA session (GetSessionToken takes an IAM user's
            # long-lived keys only), so the code goes with an AssumeRole (`Plan.mfa_role`),
            # as botocore's AssumeRoleProvider sends a role profile's mfa_serial. Before, the
            # role was assumed without it: MFA silently dropped, refused where the trust
            # policy asks for it.
            at = plan.mfa_role
            with_code = replace(roles[at], mfa_serial=plan.mfa_serial)
            roles = (*roles[:at], with_code, *roles[at + 1 :])
        for step in roles:
            if step.mfa_serial is not None:
                source, hit = self._assume_with_mfa(plan, step, source, mfa_code)
                cached = step.profile if hit else None
                source_expiration = source.expiration
                continue
            try:
                source = self._assume(step, source, plan.region)
            except StsError as exc:
                if cached is not None and exc.sts_code in STALE_SESSION_CODES:
                    # A cached set was revoked or expired early (keys rotated, sessions
                    # revoked): forget it and start over without it.
                    self.keystore.delete_session(cached)
                    return self.credentials(name, mfa_code)
                raise
            cached = None
        if not isinstance(source, Credentials):
            raise NoKeys(f"profile {name!r} resolves to long-lived keys, which vaultd never serves")
        return replace(source, source_expiration=source_expiration, unrefreshed=unrefreshed)

    def _root_keys(self, plan: resolve.Plan) -> Source:
        if plan.signin is not None:
            if plan.signin.kind == "sso":
                return self.identity_center.credentials(plan.signin)
            return self.aws_login.credentials(plan.signin)
        if plan.credential_process:
            try:
                return process.credentials_from_process(
                    plan.credential_process, self.clock(), self.runner
                )
            except mfa.SourceFailed as exc:  # which profile's command, as config errors name it
                raise mfa.SourceFailed(f"profile {plan.root!r}: {exc.message}") from None
        keys = self.keystore.get_keys(plan.root)
        if keys is None:
            raise no_keys(plan.root)
        return keys

    def cached_session(self, plan: resolve.Plan, item: str | None = None) -> CachedSession | None:
        cached = self.keystore.get_session(item or plan.root)
        if cached is None or cached.mfa_serial != plan.mfa_serial:
            return None
        if cached.credentials.remaining(self.clock()) <= MIN_SESSION_LEFT:
            return None
        return cached

    def federation_token(self, name: str, duration: int) -> Credentials:
        """Console credentials for a profile without a role: GetFederationToken with the
        root's long-lived keys (it accepts no MFA and no session credentials)."""
        plan = self.plan(name)
        keys = self._root_keys(plan)
        if isinstance(keys, Credentials):
            raise StsError(f"profile {name!r} has only temporary credentials: nothing to federate")
        return self.sts.credentials(
            "get_federation_token",
            keys,
            plan.region,
            f"get a console session for {name!r}",
            Name=resolve.default_session_name()[:32],
            Policy=FEDERATION_POLICY,
            DurationSeconds=duration,
        )

    def drop_sessions(self, profile: str | None) -> tuple[list[str], int]:
        """Delete cached sessions from the keyring (all, or those `profile` is built on);
        returns their names and how many there were."""
        return inventory.clear_sessions(self.keystore, self.load_profiles, profile)

    def inventory(self, active: str | None, exec_tokens: Mapping[str, int]) -> list[dict[str, Any]]:
        """One row per profile in the config or the keyring (`inventory.profile_rows`)."""
        return inventory.profile_rows(
            self.load_profiles(),
            self.keystore,
            active=active,
            exec_tokens=exec_tokens,
            now=self.clock(),
        )

    def has_auto_code(self, plan: resolve.Plan) -> bool:
        return bool(plan.mfa_process) or (
            plan.mfa_ykman if plan.mfa_ykman is not None else self.ykman_default
        )

    def _code(self, plan: resolve.Plan, given: str | None) -> str:
        """The code to send: the person's, else an automatic source's, else ask for one."""
        serial = plan.mfa_serial or ""
        if given is not None:
            return given
        failure, reason = "", None
        if self.has_auto_code(plan):
            try:
                return self._auto_code(plan, serial)
            except mfa.SourceFailed as exc:
                log.warning(
                    "automatic MFA code for %s failed: %s",
                    plan.target,
                    exc.message,
                )
                reason = exc.message
                failure = f" ({reason})"
        raise MfaRequired(
            f"profile {plan.target!r} needs an MFA code for {serial}{failure}: "
            "run `vaultd mfa CODE`",
            profile=plan.target,
            serial=serial,
            reason=reason,
        )

    def _auto_code(self, plan: resolve.Plan, serial: str) -> str:
        for attempt in range(AUTO_CODE_ATTEMPTS):
            if plan.mfa_process:
                code = mfa.mfa_code_from_process(plan.mfa_process, self.runner)
            else:
                code = mfa.mfa_code_from_ykman(serial, self.runner)
            if code != self._last_auto_code.get(serial):
                self._last_auto_code[serial] = code
                return code
            if attempt + 1 < AUTO_CODE_ATTEMPTS:
                self.sleep(AUTO_CODE_WAIT)  # TOTP codes change every 30 s
        raise mfa.SourceFailed("the code source kept printing the code already used")

    def _session(
        self, plan: resolve.Plan, keys: AccessKeys, code: str | None
    ) -> tuple[Credentials, bool]:
        cached = self.cached_session(plan) if code is None else None
        if cached is not None:
            return cached.credentials, True
        params: dict[str, Any] = {"DurationSeconds": self.session_duration}
        if plan.mfa_serial is not None:
            params.update(SerialNumber=plan.mfa_serial, TokenCode=self._code(plan, code))
        doing = f"get a session for {plan.root!r} with key {mask_key_id(keys.access_key_id)}"
        creds = self.sts.credentials("get_session_token", keys, plan.region, doing, **params)
        self.keystore.set_session(plan.root, CachedSession(plan.mfa_serial, creds))
        return creds, False

    def _assume_with_mfa(
        self, plan: resolve.Plan, step: resolve.RoleStep, keys: Source, code: str | None
    ) -> tuple[Credentials, bool]:
        """A role assumed with the code itself: over one hour, from the long-lived keys; or
        the first role over temporary root credentials. Its credentials are cached in the
        keyring under the role's profile, as an MFA session is under the root's."""
        cached = self.cached_session(plan, step.profile) if code is None else None
        if cached is not None:
            return cached.credentials, True
        creds = self._assume(step, keys, plan.region, self._code(plan, code))
        self.keystore.set_session(step.profile, CachedSession(plan.mfa_serial, creds))
        return creds, False

    def _assume(
        self, step: resolve.RoleStep, source: Source, region: str, code: str | None = None
    ) -> Credentials:
        params: dict[str, Any] = {
            "RoleArn": step.role_arn,
            "RoleSessionName": step.session_name,
            "DurationSeconds": step.duration,
        }
        if step.external_id:
            params["ExternalId"] = step.external_id
        if code is not None and step.mfa_serial is not None:
            params.update(SerialNumber=step.mfa_serial, TokenCode=code)
        doing = f"assume {step.role_arn} for {step.profile!r}"
        return self.sts.credentials("assume_role", source, region, doing, **params)
