"""What a failing credential_process printed on stderr reaches status and the log only as
one short line with keys and secrets masked (the tester's finding: `boom AKIASECRETLEAK
wJalrSECRET` was copied verbatim). Real shell scripts, each named as `sh -c SCRIPT`: the
daemon runs a credential_process without a shell, as botocore does."""

from __future__ import annotations

import base64
import re
import shlex
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultd.core import process
from vaultd.core.credentials import DETAIL_MAX, outside_detail
from vaultd.core.mfa import SourceFailed

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def failure(script: str) -> str:
    with pytest.raises(SourceFailed) as info:
        process.credentials_from_process(f"sh -c {shlex.quote(script)}", 0.0)
    return info.value.message


def test_keys_and_secrets_on_stderr_are_masked() -> None:
    message = failure("echo boom AKIASECRETLEAK wJalrSECRET >&2; exit 3")
    assert "AKIASECRETLEAK" not in message and "wJalrSECRET" not in message
    assert message.startswith("credential_process exited with status 3: boom ")


def test_a_long_stderr_is_one_bounded_line() -> None:
    message = failure(
        f"echo first >&2; printf 'ASIAABCDEFGHIJKLMNOP {SECRET} %0600d' 0 >&2; exit 1"
    )
    assert "\n" not in message and "first" not in message
    assert SECRET not in message and "ASIAABCDEFGHIJKLMNOP" not in message
    assert len(message) <= len("credential_process exited with status 1: ") + DETAIL_MAX


def test_prose_stays_readable() -> None:
    said = "Unable to locate Credentials: token expired (status 403)"
    assert outside_detail(said) == said
    assert outside_detail("key ASIAABCDEFGHIJKLMNOP\n") == "key ****MNOP"


# The tester's second finding: all-lowercase secrets, URL-safe tokens split on `-` or `_`,
# and MFA codes passed through, while mixed-case AWS-style secrets were masked.
TESTERS = (
    "secret: abcdefghijklmnopqrstuvwxyzabcdefghijklmn, code 123456, "
    "tok a1b2-c3d4e5f6-g7h8i9j0k1-l2m3n4_o5p6q7r8s"
)


def test_the_testers_stderr_is_masked() -> None:
    message = failure(f"echo '{TESTERS}' >&2; exit 1")
    assert message == "credential_process exited with status 1: secret: ****, code ****, tok ****"


# One table each way, each checked whole: what is masked, and what stays as it is.
MASKED = {
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ": "****",  # any case
    "0123456789abcdef0123456789abcdef": "****",  # hex
    "dGhpcyBpcyBhIHNlY3JldCB0b2tlbg==": "****==",  # base64, its padding left
    "x-amz-security-token: IQoJb3JpZ2luX2VjEJr-_aB": "x-amz-security-token: ****",
    f"AWS_SECRET_ACCESS_KEY={SECRET}": "AWS_SECRET_ACCESS_KEY=****",
    "otp=654321, then 000000.": "otp=****, then ****.",
    "token abcdefghij0123456789 at /usr/bin/aws": "token **** at /usr/bin/aws",
    "~/.aws/sso/cache/3f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a.json": "~/.aws/sso/cache/****.json",
    f"/{SECRET}": "****",  # a base64 secret starting with `/` is no path
}
KEPT = (
    "/usr/bin/aws: exit status 255",
    "/usr/local/lib/node_modules/credential-provider-process/index.js line 42: failed",
    'File "/usr/lib/python3.11/site-packages/botocore/credentials.py", line 1234',
    "Partial credentials found in shared-credentials-file, missing: aws_secret_access_key",
    "AWS_SECRET_ACCESS_KEY is not set; AWS_EC2_METADATA_DISABLED=true",
    "expired at 2027-01-15T08:00:00Z (retry 3 of 5, waited 12345 ms, id 1234567)",
)


def test_tokens_and_codes_are_masked() -> None:
    assert {said: outside_detail(said) for said in MASKED} == MASKED


def test_prose_paths_names_and_short_numbers_are_kept() -> None:
    assert {said: outside_detail(said) for said in KEPT} == {said: said for said in KEPT}


# Property-style: the same rules over generated text. Tokens are written in base64, its
# URL-safe form or hex (whatever the case), placed among words; a path starts with `/`.
# Bounded so that the text fits DETAIL_MAX.
TOKEN_CHARS = string.ascii_letters + string.digits + "+/-_"
WORD = st.from_regex(r"[A-Z]?[a-z]{1,11}", fullmatch=True)
NUMBER = st.integers(0, 99_999).map(str)
PATH = st.lists(
    st.from_regex(r"[a-z]{1,6}(?:[-_][a-z]{1,6})?[0-9]?", fullmatch=True), min_size=1, max_size=3
).map(lambda parts: "/" + "/".join(parts))
ENV_NAME = st.from_regex(r"[A-Z]{1,8}(?:_[A-Z]{1,8}){1,3}", fullmatch=True)
PIECE = st.one_of(WORD, NUMBER, PATH, ENV_NAME)
PROSE = st.lists(PIECE, min_size=1, max_size=4).map(" ".join)
SHORT_PROSE = st.lists(PIECE, min_size=1, max_size=2).map(" ".join)


def _encoded(data: bytes, how: str) -> str:
    if how == "hex":
        return data.hex()
    if how == "urlsafe":
        return base64.urlsafe_b64encode(data).decode().rstrip("=")
    return base64.b64encode(data).decode().rstrip("=")


TOKEN = st.one_of(
    # Random text of the tokens' alphabet with a digit before a letter (a name never has
    # one), or with none of the separators that make a name.
    st.text(TOKEN_CHARS, min_size=20, max_size=60).filter(
        lambda t: re.search("[0-9][A-Za-z]", t) is not None or not re.search("[-_]", t)
    ),
    st.builds(_encoded, st.binary(min_size=15, max_size=45), st.sampled_from(["hex", "b64"])),
    st.builds(_encoded, st.binary(min_size=15, max_size=45), st.just("urlsafe")).filter(
        lambda t: re.search("[0-9][A-Za-z]", t) is not None
    ),
).filter(lambda t: not t.startswith("/"))


@given(SHORT_PROSE, TOKEN, SHORT_PROSE)
def test_a_token_among_words_is_masked(before: str, token: str, after: str) -> None:
    shown = outside_detail(f"{before} {token} {after}")
    assert token not in shown and shown.startswith(f"{before} **** ")


@given(SHORT_PROSE, st.integers(0, 999_999).map(lambda n: f"{n:06d}"), SHORT_PROSE)
def test_a_six_digit_code_among_words_is_masked(before: str, code: str, after: str) -> None:
    assert outside_detail(f"{before} {code}, {after}") == f"{before} ****, {after}"


@given(PROSE)
def test_words_paths_names_and_short_numbers_are_kept(said: str) -> None:
    assert outside_detail(said) == said
