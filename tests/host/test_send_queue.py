"""host.send_queue against real loopback sockets: what the kernel holds for the peer."""

from __future__ import annotations

import socket
import sys

import pytest

from vaultd.host.send_queue import unsent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIOCOUTQ: Linux")


def test_the_queue_grows_with_what_the_peer_has_not_taken_and_shrinks_as_it_reads() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it takes little
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            assert unsent(server) == 0
            server.setblocking(False)
            sent = 0
            try:
                while sent < 64 * 2**20:
                    sent += server.send(b"x" * 65536)
            except BlockingIOError:
                pass  # the kernel holds all it will
            held = unsent(server)
            assert held is not None and 0 < held <= sent
            client.settimeout(5)
            got = client.recv(65536)
            assert got
            for _ in range(100):  # the acknowledgement is the kernel's, in a moment
                now = unsent(server)
                if now is not None and now < held:
                    break
                client.recv(1)
            assert now is not None and now < held
    assert unsent(server) is None  # closed
    assert unsent(None) is None
