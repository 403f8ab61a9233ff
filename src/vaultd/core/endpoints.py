"""botocore sessions that read botocore's endpoint data one service at a time.

Every botocore client is created through the session's legacy `EndpointResolver`, which
botocore builds from `endpoints.json` (1.2 MB, every service in every partition) parsed whole
into OrderedDicts: about 7 MiB that a long-running daemon keeps for the few services it ever
calls (sts, iam, sso, sso-oidc, signin). Here the file is read with botocore's own search
paths (AWS_DATA_PATH, ~/.aws/models, the installed data) and extensions, and decoded as
botocore decodes it (`json`, OrderedDict objects), except that each partition's `services`
is a read-only mapping that decodes a service's entry from the file's text the first time
the resolver asks for it. The resolver then answers exactly as it would with the whole file
(the structure is the same; only when each service is decoded differs), and the daemon keeps
the file's text, compressed (about 0.1 MiB), instead of its decoded form.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import botocore.loaders
import botocore.session

ENDPOINTS = "endpoints"
# The file names botocore's JSONFileLoader tries for a data path, in its order.
OPENERS: tuple[tuple[str, Callable[..., Any]], ...] = ((".json", open), (".json.gz", gzip.open))
_SPACE = frozenset(" \t\n\r")  # JSON's whitespace (RFC 8259)
_PLAIN = json.JSONDecoder()
_ORDERED = json.JSONDecoder(object_pairs_hook=OrderedDict)  # as botocore's JSONFileLoader


class Text:
    """The file's text, held zlib-compressed (1.2 MB of JSON keeps as about 0.1 MB): it is
    read again only when a service is first looked up, a few times in a daemon's life."""

    def __init__(self, text: str) -> None:
        self._packed = zlib.compress(text.encode("utf-8"))

    def __str__(self) -> str:
        return zlib.decompress(self._packed).decode("utf-8")


class Services(Mapping[str, Any]):
    """One partition's services, by name: each decoded from `text` at its offset (`starts`)
    the first time it is looked up, then kept."""

    def __init__(self, text: Text, starts: dict[str, int]) -> None:
        self._text = text
        self._starts = starts
        self._decoded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._decoded:
            start = self._starts[name]
            self._decoded[name] = _ORDERED.raw_decode(str(self._text), start)[0]
        return self._decoded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._starts

    def __iter__(self) -> Iterator[str]:
        return iter(self._starts)

    def __len__(self) -> int:
        return len(self._starts)


class _Reader:
    """A cursor over JSON text that walks objects and arrays member by member, leaving every
    value to `json`'s own decoder (`raw_decode`). Raises ValueError on malformed text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _next(self) -> str:
        """Skip JSON whitespace; the character there ("" at the end)."""
        while self.text[self.pos : self.pos + 1] in _SPACE:
            self.pos += 1
        return self.text[self.pos : self.pos + 1]

    def _take(self, allowed: str) -> str:
        found = self._next()
        if found not in allowed:
            raise ValueError(f"expected one of {allowed!r} at offset {self.pos}")
        self.pos += 1
        return found

    def value(self, decoder: json.JSONDecoder = _ORDERED) -> Any:
        self._next()
        found, self.pos = decoder.raw_decode(self.text, self.pos)
        return found

    def skip(self) -> int:
        """Where the next value starts; it is checked whole by decoding it (then dropped)."""
        self._next()
        start = self.pos
        _, self.pos = _PLAIN.raw_decode(self.text, self.pos)
        return start

    def _members(self, opening: str, closing: str) -> Iterator[None]:
        self._take(opening)
        if self._next() == closing:
            self.pos += 1
            return
        while True:
            yield None
            if self._take("," + closing) == closing:
                return

    def object_keys(self) -> Iterator[str]:
        """Each key of the object that starts here; the caller reads its value."""
        for _ in self._members("{", "}"):
            key = self.value(_PLAIN)
            self._take(":")
            yield key

    def array_items(self) -> Iterator[None]:
        """Once per element of the array that starts here; the caller reads the element."""
        return self._members("[", "]")


def decode(text: str) -> OrderedDict[str, Any]:
    """endpoints.json's `text` as botocore decodes it, but with each partition's `services`
    a `Services` mapping. Raises ValueError when the text is not JSON."""
    reader = _Reader(text)
    packed = Text(text)
    data: OrderedDict[str, Any] = OrderedDict()
    for key in reader.object_keys():
        if key != "partitions":
            data[key] = reader.value()
            continue
        data[key] = partitions = []
        for _ in reader.array_items():
            partition: OrderedDict[str, Any] = OrderedDict()
            for field in reader.object_keys():
                if field == "services":
                    starts = {name: reader.skip() for name in reader.object_keys()}
                    partition[field] = Services(packed, starts)
                else:
                    partition[field] = reader.value()
            partitions.append(partition)
    return data


class FileLoader(botocore.loaders.JSONFileLoader):  # type: ignore[misc]
    """botocore's JSON file loader, except that the endpoint data is `decode`d."""

    def load_file(self, file_path: str) -> Any:
        if os.path.basename(file_path) != ENDPOINTS:
            return super().load_file(file_path)
        for extension, opener in OPENERS:
            if os.path.isfile(file_path + extension):
                with opener(file_path + extension, "rb") as stream:
                    return decode(stream.read().decode("utf-8"))
        return None


def new_session(profile: str | None = None) -> Any:
    """A new botocore session (on `profile`, None for botocore's default) whose data loader
    is botocore's own (`create_loader` with the session's `data_path`, i.e. AWS_DATA_PATH)
    reading endpoint data with `FileLoader`.

    The loader is made when the session first needs it, as botocore's own is: `data_path`
    may come from the config file, and a file botocore cannot parse must fail the client
    that needs it (ConfigParseError, then read again the next time), not the session and
    with it the daemon's start."""
    session = botocore.session.Session(profile=profile)

    def data_loader() -> Any:
        loader = botocore.loaders.create_loader(session.get_config_variable("data_path"))
        loader.file_loader = FileLoader()
        return loader

    session.lazy_register_component("data_loader", data_loader)
    return session
