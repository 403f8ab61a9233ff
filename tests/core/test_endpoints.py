"""core.endpoints: botocore's endpoint data decoded one service at a time answers exactly as
botocore's own full decode does."""

from __future__ import annotations

import gzip
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import botocore.config
import botocore.loaders
import botocore.regions
import botocore.session
import pytest
from botocore import UNSIGNED

from vaultd.core import endpoints, signin
from vaultd.core.credentials import AccessKeys
from vaultd.core.sts import Boto3StsFactory
from vaultd.secret import Secret

UNSIGNED_CONFIG = botocore.config.Config(signature_version=UNSIGNED)
BUILTIN = Path(botocore.loaders.Loader.BUILTIN_DATA_PATH) / "endpoints.json"


def materialised(data: Any) -> Any:
    """`data` with every lazy `Services` mapping turned into a decoded OrderedDict."""
    if isinstance(data, endpoints.Services):
        return OrderedDict((name, data[name]) for name in data)
    if isinstance(data, dict):
        return type(data)((key, materialised(value)) for key, value in data.items())
    if isinstance(data, list):
        return [materialised(item) for item in data]
    return data


def test_decode_is_botocores_decode_of_the_installed_file() -> None:
    full = botocore.loaders.JSONFileLoader().load_file(str(BUILTIN.with_suffix("")))
    lazy = endpoints.decode(BUILTIN.read_text(encoding="utf-8"))
    assert isinstance(lazy["partitions"][0]["services"], endpoints.Services)
    assert len(lazy["partitions"][0]["services"]) > 100
    # The same keys, values, order and kinds (botocore decodes objects as OrderedDicts).
    assert repr(materialised(lazy)) == repr(full)


def test_a_service_is_decoded_only_when_asked_for() -> None:
    lazy = endpoints.decode(BUILTIN.read_text(encoding="utf-8"))
    services = lazy["partitions"][0]["services"]
    assert "sts" in services and "no-such-service" not in services
    assert services._decoded == {}
    assert services.get("no-such-service", "default") == "default"
    assert services["sts"] is services["sts"]
    assert list(services._decoded) == ["sts"]


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        ' { "version" : 3 , "partitions" : [ ] } ',
        '{"partitions":[{"partition":"p","services":{}}],"version":3}',
        '{"partitions": [{"services": {"a": {"endpoints": {}}, "b": [1, {"x": "}"}]},'
        ' "partition": "q"}, {"partition": "r"}]}',
    ],
)
def test_decode_agrees_with_json_on_edge_shapes(text: str) -> None:
    assert materialised(endpoints.decode(text)) == json.loads(text, object_pairs_hook=OrderedDict)


@pytest.mark.parametrize(
    "text", ["", "{", '{"partitions": [', '{"partitions": [{"services": {"a": }}]}', "[]"]
)
def test_malformed_text_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json's own errors are ValueErrors too
        endpoints.decode(text)


def resolutions(resolver: botocore.regions.EndpointResolver) -> list[Any]:
    answers: list[Any] = []
    for service in ("sts", "iam", "sso", "sso-oidc", "signin", "s3", "no-such-service"):
        for region in (None, "aws-global", "us-east-1", "eu-west-1", "cn-north-1"):
            for dualstack, fips in ((False, False), (True, False), (False, True)):
                try:
                    answers.append(
                        resolver.construct_endpoint(
                            service,
                            region,
                            use_dualstack_endpoint=dualstack,
                            use_fips_endpoint=fips,
                        )
                    )
                except Exception as exc:  # the failure is part of the answer
                    answers.append(repr(exc))
        answers.append(resolver.get_available_endpoints(service, allow_non_regional=True))
    answers.append(resolver.get_available_partitions())
    return answers


def test_the_resolver_answers_as_with_the_whole_file() -> None:
    full = botocore.session.Session()._get_internal_component("endpoint_resolver")
    lazy = endpoints.new_session()._get_internal_component("endpoint_resolver")
    assert isinstance(lazy._endpoint_data["partitions"][0]["services"], endpoints.Services)
    assert lazy.uses_builtin_data is full.uses_builtin_data is True
    assert resolutions(lazy) == resolutions(full)


def test_the_session_keeps_botocores_search_path_and_gzip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AWS_DATA_PATH first, as botocore's own loader: here a gzipped endpoints file of one
    # partition (botocore reads `.json` and `.json.gz`).
    data = {"partitions": [{"partition": "own", "regions": {}, "services": {"sts": {}}}]}
    with gzip.open(tmp_path / "endpoints.json.gz", "wt", encoding="utf-8") as out:
        json.dump(data, out)
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    loader = endpoints.new_session().get_component("data_loader")
    found, path = loader.load_data_with_path("endpoints")
    assert path == str(tmp_path / "endpoints")
    assert materialised(found) == data
    assert loader.load_service_model("sts", "service-2")["metadata"]["serviceId"] == "STS"


def decoded_services(session: Any) -> set[str]:
    """The services whose endpoint data `session`'s resolver has decoded, in any partition;
    fails when the session reads endpoint data the way plain botocore does."""
    resolver = session._get_internal_component("endpoint_resolver")
    found: set[str] = set()
    for partition in resolver._endpoint_data["partitions"]:
        services = partition["services"]
        assert isinstance(services, endpoints.Services), "the whole endpoints.json was decoded"
        found.update(services._decoded)
    return found


def test_the_daemons_sts_and_iam_clients_decode_only_their_own_entries() -> None:
    factory = Boto3StsFactory()
    keys = AccessKeys("AKIAUSERKEY000000001", Secret("s" * 40))
    assert factory(keys, "eu-west-1").meta.endpoint_url == "https://sts.eu-west-1.amazonaws.com"
    factory.client("iam", keys, "eu-west-1")
    assert decoded_services(factory._session) == {"sts", "iam"}


def test_sign_in_sessions_decode_only_their_own_entries() -> None:
    Path(os.environ["AWS_CONFIG_FILE"]).write_text("[profile dev]\nregion = eu-west-1\n")
    session = signin.botocore_session("dev")
    session.create_client("sso", region_name="eu-west-1", config=UNSIGNED_CONFIG)
    session.create_client("sso-oidc", region_name="eu-west-1", config=UNSIGNED_CONFIG)
    # endpoints.json names services by endpoint prefix: sso is portal.sso, sso-oidc is oidc.
    assert decoded_services(session) == {"portal.sso", "oidc"}
