"""The pure rules that tell a sign-in service's fault from the cache's and from a refused
sign-in (`signin.misfit`, `signin.passing`)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from vaultd.core.signin import ServiceFault, Shape, misfit, passing
from vaultd.documents import NUMBER

ROLE: Shape = {"role": {"key": str, "expiration": NUMBER}, "note?": str}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"role": {"key": "k", "expiration": 1}}, None),
        ({"role": {"key": "k", "expiration": 1.5}, "note": "n"}, None),
        (None, "the whole is not an object"),
        ({"message": "<html>"}, "role is missing"),
        ({"role": "k"}, "role is not an object"),
        ({"role": {"expiration": 1}}, "role.key is missing"),
        ({"role": {"key": 5, "expiration": 1}}, "role.key is not a string"),
        ({"role": {"key": "k", "expiration": "soon"}}, "role.expiration is not a number"),
        ({"role": {"key": "k", "expiration": True}}, "role.expiration is not a number"),
        ({"role": {"key": "k", "expiration": 1}, "note": None}, "note is not a string"),
    ],
)
def test_misfit_names_the_field_never_its_value(value: object, why: str | None) -> None:
    assert misfit(value, ROLE) == why


def client_error(status: int, code: str) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "CreateToken")


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            client_error(500, "InternalServerException"),
            "sso-oidc CreateToken failed (InternalServerException)",
        ),
        (client_error(503, ""), "sso-oidc CreateToken failed (503)"),
        (
            client_error(429, "TooManyRequestsException"),
            "sso-oidc CreateToken failed (TooManyRequestsException)",
        ),
        (client_error(400, "SlowDownException"), "sso-oidc CreateToken failed (SlowDownException)"),
        (
            client_error(400, "ThrottlingException"),
            "sso-oidc CreateToken failed (ThrottlingException)",
        ),
        (
            EndpointConnectionError(endpoint_url="https://x"),
            "cannot reach sso-oidc CreateToken: EndpointConnectionError",
        ),
        (
            ReadTimeoutError(endpoint_url="https://x"),
            "cannot reach sso-oidc CreateToken: ReadTimeoutError",
        ),
    ],
)
def test_a_failure_a_retry_may_not_meet_is_the_services(exc: Exception, message: str) -> None:
    fault = passing(exc, "sso-oidc", "CreateToken")
    assert fault is not None
    assert str(fault) == message


@pytest.mark.parametrize(
    "exc",
    [
        client_error(400, "InvalidGrantException"),
        client_error(401, "InvalidClientException"),
        client_error(400, "UnauthorizedClientException"),
        client_error(400, "AccessDeniedException"),
        ParamValidationError(report="refreshToken is not a string"),
    ],
)
def test_a_refusal_or_a_local_fault_is_not(exc: Exception) -> None:
    assert passing(exc, "sso-oidc", "CreateToken") is None


def test_a_service_fault_stays_one() -> None:
    fault = ServiceFault(
        "malformed answer from sso GetRoleCredentials (roleCredentials is missing)"
    )
    assert passing(fault, "sso", "GetRoleCredentials") is fault
