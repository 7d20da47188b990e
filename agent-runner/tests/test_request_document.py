"""The ``request`` field against the real server: what is stored is the JSON that was
accepted, bounded by its size, parsed off the event loop, one document at a time."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import Part, get, multipart, peak_rss_kib, post_raw, request_part

from stigmer_agent_runner.runs import MAX_JSON_DEPTH, MAX_REQUEST_BYTES


def post_document(server, raw: bytes):
    return post_raw(server.port, multipart([request_part(raw=raw)]))


def stored_request(server, response) -> bytes:
    assert response.status == 201, response
    return (server.workspace / response.json()["id"] / "request.json").read_bytes()


def test_request_is_stored_as_the_bytes_accepted(shared_server) -> None:
    raw = b'{ "agent":"coder",  "n": 1E2, "s": "\\u00e9\\/\\ud83d\\ude00", "deep": [[{"x": []}]] }'
    assert stored_request(shared_server, post_document(shared_server, raw)) == raw


def test_deeply_nested_request_is_refused_instead_of_expanding_on_disk(shared_server) -> None:
    # 400 levels around 24,000 zeros once became a request.json 400 times its size.
    raw = b'{"a":' + b"[" * 400 + b"0," * 24_000 + b"0" + b"]" * 400 + b"}"
    response = post_document(shared_server, raw)
    assert response.status == 400, response
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in response.json()["error"]

    deepest = b'{"a":' + b"[" * (MAX_JSON_DEPTH - 1) + b"0," * 24_000 + b"0" + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    assert stored_request(shared_server, post_document(shared_server, deepest)) == deepest


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b'{"a": 1e400}', "out of range"),
        (b'{"a": -1E309}', "out of range"),
        (b'{"a": Infinity}', "Infinity is not valid JSON"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"\\udc00": 1}', "lone surrogate"),
        (b'{"a": ["ok", "\\ud83d x"]}', "lone surrogate"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": {"b": 1, "c": {}, "b": 2}}', "duplicate key 'b'"),
    ],
    ids=["1e400", "-1E309", "Infinity", "lone-high", "lone-low-key", "lone-in-array", "dup-top", "dup-nested"],
)
def test_request_that_is_not_strict_json_is_400_not_stored(shared_server, raw: bytes, fragment: str) -> None:
    before = set(shared_server.workspace.iterdir())
    response = post_document(shared_server, raw)
    assert response.status == 400, response
    assert fragment in response.json()["error"]
    assert set(shared_server.workspace.iterdir()) == before


def test_escaped_backslash_before_u_is_not_a_surrogate(shared_server) -> None:
    raw = b'{"path": "C:\\\\ud800"}'
    assert stored_request(shared_server, post_document(shared_server, raw)) == raw


def test_request_field_over_its_limit_is_413(shared_server) -> None:
    raw = b'{"a":"' + b"x" * MAX_REQUEST_BYTES + b'"}'
    response = post_document(shared_server, raw)
    assert response.status == 413, response
    assert f"larger than {MAX_REQUEST_BYTES} bytes" in response.json()["error"]


def test_large_requests_neither_hold_memory_nor_stall_other_requests(shared_server) -> None:
    # 10 MiB of JSON parsed on the event loop once took 270 MB per request and
    # stalled /version for 1.6 s. Now: over the field limit is refused as it streams
    # in, and the largest document allowed, of the costliest kind (tiny containers),
    # is parsed in a worker thread, one at a time.
    server = shared_server
    costliest = b'{"a":[' + b"[]," * ((MAX_REQUEST_BYTES - 20) // 3) + b"[]]}"
    assert len(costliest) <= MAX_REQUEST_BYTES
    too_big = b'{"a":[' + b"[]," * 3_000_000 + b"[]]}"
    rss_before = peak_rss_kib(server.proc.pid)

    results: list[int] = []

    def upload(raw: bytes) -> None:
        results.append(post_document(server, raw).status)

    threads = [threading.Thread(target=upload, args=(raw,)) for raw in (too_big, too_big, costliest, costliest)]
    for thread in threads:
        thread.start()
    slowest = 0.0
    while any(thread.is_alive() for thread in threads):
        start = time.monotonic()
        assert get(server.url("/version"), timeout=10)[0] == 200
        slowest = max(slowest, time.monotonic() - start)
        time.sleep(0.01)
    for thread in threads:
        thread.join()

    assert sorted(results) == [201, 201, 413, 413]
    growth_mib = (peak_rss_kib(server.proc.pid) - rss_before) / 1024
    assert growth_mib < 60, f"peak RSS grew by {growth_mib:.0f} MiB"
    assert slowest < 0.75, f"/version took {slowest:.2f} s while requests were parsed"


def test_parts_after_the_closing_boundary_are_400(shared_server) -> None:
    before = set(shared_server.workspace.iterdir())
    smuggled = multipart([Part("files", b"late", filename="late.txt")])
    response = post_raw(shared_server.port, multipart([request_part()]) + smuggled)
    assert response.status == 400, response
    assert "after the closing boundary" in response.json()["error"]
    assert set(shared_server.workspace.iterdir()) == before

    # Blank lines after the end are only transport padding.
    response = post_raw(shared_server.port, multipart([request_part()]) + b"\r\n\r\n")
    assert response.status == 201, response
