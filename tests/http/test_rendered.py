"""wire.Rendered: replies kept for one second, in a bounded table."""

from __future__ import annotations

from vaultd.http.wire import Rendered


def test_a_rendering_lasts_only_for_its_second() -> None:
    table = Rendered()
    assert table.get(b"Mon, 30 Nov 2026 09:00:00 GMT", "k") is None
    table.put("k", (b"head", b"head+body"))
    assert table.get(b"Mon, 30 Nov 2026 09:00:00 GMT", "k") == (b"head", b"head+body")
    assert table.get(b"Mon, 30 Nov 2026 09:00:01 GMT", "k") is None  # a new Date: render again
    assert len(table) == 0


def test_varied_requests_cannot_grow_the_table() -> None:
    table = Rendered(limit=8)
    table.get(b"d", None)
    for n in range(100):
        table.put(n, (b"", b""))
        assert len(table) <= 8
