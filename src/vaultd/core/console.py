"""AWS console sign-in URLs through the federation endpoint. Standard library only.

getSigninToken turns temporary credentials into a sign-in token; the login URL carries it
to the console. China and GovCloud partitions have their own hosts.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from vaultd.core.credentials import Credentials, signin_session
from vaultd.errors import StsError, reason_of
from vaultd.untrusted import json_object

HOSTS = {
    "aws": ("https://signin.aws.amazon.com/federation", "https://console.aws.amazon.com/"),
    "aws-cn": ("https://signin.amazonaws.cn/federation", "https://console.amazonaws.cn/"),
    "aws-us-gov": (
        "https://signin.amazonaws-us-gov.com/federation",
        "https://console.amazonaws-us-gov.com/",
    ),
}


def partition_of(arn: str | None, region: str | None) -> str:
    if arn and arn.startswith("arn:"):
        part = arn.split(":")[1]
        if part in HOSTS:
            return part
    if region and region.startswith("cn-"):
        return "aws-cn"
    if region and region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def destination(partition: str, region: str | None) -> str:
    console = HOSTS[partition][1]
    if not region:
        return console
    host = console.replace("https://", f"https://{region}.", 1)
    return f"{host}console/home?region={urllib.parse.quote(region)}"


def signin_token(federation_url: str, creds: Credentials, session_duration: int | None) -> str:
    """Trade temporary credentials for a sign-in token (getSigninToken). `session_duration`
    (seconds) only for role credentials: federation sets keep their own lifetime. Raises
    StsError naming the endpoint when it cannot be reached or refuses."""
    session = json.dumps(signin_session(creds))
    params = {"Action": "getSigninToken", "Session": session}
    if session_duration is not None:
        params["SessionDuration"] = str(session_duration)
    url = f"{federation_url}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:  # noqa: S310 - https/configured
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise StsError(f"the federation endpoint refused the session ({exc.code})") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise StsError(
            f"cannot reach the federation endpoint {federation_url}: {reason_of(exc)}"
        ) from None
    answer = json_object(raw)
    token = answer.get("SigninToken") if answer is not None else None
    if not isinstance(token, str) or not token:
        raise StsError("the federation endpoint answered without a SigninToken")
    return token


def login_url(federation_url: str, token: str, target: str) -> str:
    params = {"Action": "login", "Issuer": "vaultd", "Destination": target, "SigninToken": token}
    return f"{federation_url}?{urllib.parse.urlencode(params)}"
