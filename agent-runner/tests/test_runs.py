from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import (
    BOUNDARY,
    CONTENT_TYPE,
    Part,
    call_asgi,
    file_part,
    multipart,
    post_run,
    request_part,
    workspace_entries,
)

from stigmer_agent_runner.app import create_app
from stigmer_agent_runner.runs import file_name_problem, parse_header_params, UploadError


def assert_error(response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    for fragment in fragments:
        assert fragment in error, error


# --- success -----------------------------------------------------------------


def test_creates_run_with_request_and_files(client, workspace: Path) -> None:
    document = {"agent": "coder", "prompt": "fix the bug", "options": {"n": 1}}
    body = multipart(
        [
            request_part(document),
            file_part("main.py", b"print('hi')\n"),
            file_part("data.bin", bytes(range(256)) * 10),
            file_part("empty.txt", b""),
        ]
    )
    response = post_run(client, body)

    assert response.status_code == 201, response.text
    payload = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", payload["id"])
    assert payload["files"] == ["main.py", "data.bin", "empty.txt"]
    run_dir = workspace / payload["id"]
    assert workspace_entries(workspace) == [payload["id"]]  # no staging leftovers
    assert json.loads((run_dir / "request.json").read_text()) == document
    assert (run_dir / "files" / "main.py").read_bytes() == b"print('hi')\n"
    assert (run_dir / "files" / "data.bin").read_bytes() == bytes(range(256)) * 10
    assert (run_dir / "files" / "empty.txt").read_bytes() == b""
    assert sorted(p.name for p in (run_dir / "files").iterdir()) == ["data.bin", "empty.txt", "main.py"]


def test_creates_run_without_files(client, workspace: Path) -> None:
    response = post_run(client, multipart([request_part({"agent": "a", "prompt": "p"})]))
    assert response.status_code == 201, response.text
    run_dir = workspace / response.json()["id"]
    assert response.json()["files"] == []
    assert list((run_dir / "files").iterdir()) == []
    assert json.loads((run_dir / "request.json").read_text()) == {"agent": "a", "prompt": "p"}


def test_each_run_gets_its_own_id(client, workspace: Path) -> None:
    ids = {post_run(client, multipart([request_part()])).json()["id"] for _ in range(3)}
    assert len(ids) == 3
    assert workspace_entries(workspace) == sorted(ids)


def test_request_may_be_sent_as_a_file_part(client, workspace: Path) -> None:
    # curl -F request=@req.json sends the field as a file part.
    body = multipart([Part("request", b'{"agent": "x"}', filename="req.json"), file_part("a.txt")])
    response = post_run(client, body)
    assert response.status_code == 201, response.text
    assert response.json()["files"] == ["a.txt"]


def test_accepts_names_that_only_look_odd(client, workspace: Path) -> None:
    names = ["..hidden", "a..b", ".env", "name with spaces.txt", "ünïcødé.md", "C:notes", "x" * 255]
    response = post_run(client, multipart([request_part(), *(file_part(n) for n in names)]))
    assert response.status_code == 201, response.text
    files_dir = workspace / response.json()["id"] / "files"
    assert sorted(p.name for p in files_dir.iterdir()) == sorted(names)


def test_works_with_httpx_multipart_encoding(client, workspace: Path) -> None:
    response = client.post(
        "/v1/runs",
        data={"request": json.dumps({"agent": "a"})},
        files=[("files", ("one.txt", b"1")), ("files", ("two.txt", b"2"))],
    )
    assert response.status_code == 201, response.text
    assert response.json()["files"] == ["one.txt", "two.txt"]


# --- file names --------------------------------------------------------------

BAD_NAMES = {
    "../x": "'..' path components",
    "/etc/passwd": "absolute",
    "a/b": "path separators",
    "..": "not a file name",
    ".": "not a file name",
    "": "empty",
    "x/../y": "'..' path components",
    "a\\b": "path separators",
    "..\\x": "'..' path components",
    "\\\\server\\share\\x": "absolute",
    "C:\\Windows\\x": "absolute",
    "C:/Windows/x": "absolute",
    "a\x00b": "NUL",
    "tab\there": "control character",
    "y" * 256: "longer than 255 bytes",
    "é" * 128: "longer than 255 bytes",
}


@pytest.mark.parametrize("name", list(BAD_NAMES), ids=[repr(n)[:20] for n in BAD_NAMES])
def test_rejects_unsafe_file_names(client, workspace: Path, name: str) -> None:
    # A valid file first: it must not be left behind either.
    body = multipart([request_part(), file_part("ok.txt"), file_part(name)])
    response = post_run(client, body)
    assert_error(response, 400, "invalid file name", BAD_NAMES[name])
    assert workspace_entries(workspace) == []


def test_file_name_is_not_silently_sanitized() -> None:
    # python-multipart's own header parser would turn this into "x"; ours keeps it.
    _, params = parse_header_params(b'form-data; name="files"; filename="C:\\evil\\x"', "Content-Disposition")
    assert params["filename"] == "C:\\evil\\x"
    assert file_name_problem(params["filename"]) is not None


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b'form-data; name="files"; filename="a\\"b.txt"', 'a"b.txt'),  # escaped quote
        (b'form-data; name="files"; filename="a\\\\b"', "a\\b"),  # escaped backslash
        (b"form-data; name=files; filename=plain.txt", "plain.txt"),  # tokens
        (b'form-data;name="files";filename="semi;colon.txt"', "semi;colon.txt"),
    ],
)
def test_content_disposition_parsing(raw: bytes, expected: str) -> None:
    kind, params = parse_header_params(raw, "Content-Disposition")
    assert kind == "form-data"
    assert params == {"name": "files", "filename": expected}


@pytest.mark.parametrize(
    "raw",
    [
        b'form-data; name="files"; filename="unterminated',
        b'form-data; name="files"; filename="a"junk',
        b"form-data; name",
        b'form-data; name="files"; filename="a"; filename="../b"',
    ],
)
def test_malformed_content_disposition_is_rejected(raw: bytes) -> None:
    with pytest.raises(UploadError) as info:
        parse_header_params(raw, "Content-Disposition")
    assert info.value.status == 400


def test_rejects_duplicate_filename_parameter(client, workspace: Path) -> None:
    part = Part("files", b"x", disposition=b'form-data; name="files"; filename="a.txt"; filename="../b"')
    response = post_run(client, multipart([request_part(), part]))
    assert_error(response, 400, "more than once")
    assert workspace_entries(workspace) == []


def test_rejects_rfc5987_filename(client, workspace: Path) -> None:
    part = Part("files", b"x", disposition=b"form-data; name=\"files\"; filename*=UTF-8''..%2Fx")
    response = post_run(client, multipart([request_part(), part]))
    assert_error(response, 400, "filename*")
    assert workspace_entries(workspace) == []


def test_rejects_duplicate_file_names(client, workspace: Path) -> None:
    body = multipart([request_part(), file_part("a.txt", b"1"), file_part("a.txt", b"2")])
    assert_error(post_run(client, body), 400, "duplicate file name 'a.txt'")
    assert workspace_entries(workspace) == []


def test_rejects_files_field_without_filename(client, workspace: Path) -> None:
    body = multipart([request_part(), Part("files", b"not a file")])
    assert_error(post_run(client, body), 400, "'files' must be a file upload")
    assert workspace_entries(workspace) == []


def test_rejects_unexpected_fields(client, workspace: Path) -> None:
    body = multipart([request_part(), Part("extra", b"?")])
    assert_error(post_run(client, body), 400, "unexpected form field 'extra'")
    assert workspace_entries(workspace) == []


def test_rejects_part_without_content_disposition(client, workspace: Path) -> None:
    body = (
        f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{BOUNDARY}--\r\n"
    ).encode()
    assert_error(post_run(client, body), 400, "Content-Disposition")
    assert workspace_entries(workspace) == []


# --- the request field -------------------------------------------------------


def test_missing_request_field_is_400(client, workspace: Path) -> None:
    response = post_run(client, multipart([file_part("a.txt")]))
    assert_error(response, 400, "missing form field 'request'")
    assert workspace_entries(workspace) == []


def test_empty_form_is_400(client, workspace: Path) -> None:
    response = post_run(client, multipart([]))
    assert response.status_code == 400
    assert workspace_entries(workspace) == []


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"a": 1', b'{"a": NaN}', b"\xff\xfe{}"])
def test_bad_json_is_400(client, workspace: Path, raw: bytes) -> None:
    response = post_run(client, multipart([request_part(raw=raw), file_part("a.txt")]))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "form field 'request' is not valid" in error
    assert workspace_entries(workspace) == []


@pytest.mark.parametrize(
    "raw, kind",
    [(b"[1, 2]", "an array"), (b'"text"', "a string"), (b"42", "a number"), (b"null", "null"), (b"true", "a boolean")],
)
def test_non_object_json_is_400(client, workspace: Path, raw: bytes, kind: str) -> None:
    response = post_run(client, multipart([request_part(raw=raw)]))
    assert_error(response, 400, "must be a JSON object", kind)
    assert workspace_entries(workspace) == []


def test_deeply_nested_json_is_400(client, workspace: Path) -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    response = post_run(client, multipart([request_part(raw=raw)]))
    assert response.status_code == 400, response.text
    assert workspace_entries(workspace) == []


def test_request_field_twice_is_400(client, workspace: Path) -> None:
    response = post_run(client, multipart([request_part(), request_part()]))
    assert_error(response, 400, "more than once")
    assert workspace_entries(workspace) == []


# --- content type and body framing --------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(client, workspace: Path, content_type: str) -> None:
    response = post_run(client, b'{"agent": "a"}', content_type=content_type)
    assert_error(response, 415, "multipart/form-data", content_type)
    assert workspace_entries(workspace) == []


def test_missing_content_type_is_415(client, workspace: Path) -> None:
    response = client.post("/v1/runs", content=b"{}")
    assert response.status_code == 415
    assert workspace_entries(workspace) == []


@pytest.mark.parametrize("content_type", ["multipart/form-data", 'multipart/form-data; boundary="unterminated'])
def test_missing_or_bad_boundary_is_400(client, workspace: Path, content_type: str) -> None:
    response = post_run(client, multipart([request_part()]), content_type=content_type)
    assert response.status_code == 400, response.text
    assert workspace_entries(workspace) == []


def test_truncated_body_is_400(client, workspace: Path) -> None:
    body = multipart([request_part(), file_part("a.txt")], close=False)
    assert_error(post_run(client, body), 400, "incomplete")
    assert workspace_entries(workspace) == []


def test_garbage_body_is_400(client, workspace: Path) -> None:
    response = post_run(client, b"this is not multipart at all\r\n")
    assert response.status_code == 400, response.text
    assert workspace_entries(workspace) == []


# --- size limit ----------------------------------------------------------------


def test_content_length_over_limit_is_413_up_front(make_client, workspace: Path) -> None:
    client = make_client({"STIGMER_MAX_UPLOAD_BYTES": "1000"})
    body = multipart([request_part(), file_part("big.bin", b"x" * 2000)])
    assert_error(post_run(client, body), 413, "1000 bytes")
    assert workspace_entries(workspace) == []


def test_declared_content_length_over_limit_is_413_before_reading(make_config, workspace: Path) -> None:
    app = create_app(make_config({"STIGMER_MAX_UPLOAD_BYTES": "4096"}))
    body = multipart([request_part()])  # small: only the declared length is too big
    headers = {"content-type": CONTENT_TYPE, "content-length": "5000"}
    status, payload = call_asgi(app, "POST", "/v1/runs", headers, [body])
    assert status == 413
    assert "4096 bytes" in json.loads(payload)["error"]
    assert workspace_entries(workspace) == []


def test_body_at_exactly_the_limit_is_accepted(make_client, workspace: Path) -> None:
    body = multipart([request_part(), file_part("f.bin", b"x" * 500)])
    client = make_client({"STIGMER_MAX_UPLOAD_BYTES": str(len(body))})
    assert post_run(client, body).status_code == 201
    client = make_client({"STIGMER_MAX_UPLOAD_BYTES": str(len(body) - 1)})
    assert post_run(client, body).status_code == 413


def test_limit_is_enforced_while_streaming_without_content_length(make_config, workspace: Path) -> None:
    app = create_app(make_config({"STIGMER_MAX_UPLOAD_BYTES": "4096"}))
    body = multipart([request_part(), file_part("big.bin", b"x" * 20_000)])
    chunks = [body[i : i + 1024] for i in range(0, len(body), 1024)]
    status, payload = call_asgi(app, "POST", "/v1/runs", {"content-type": CONTENT_TYPE}, chunks)
    assert status == 413
    assert "4096 bytes" in json.loads(payload)["error"]
    assert workspace_entries(workspace) == []


def test_streaming_upload_within_limit_succeeds(make_config, workspace: Path) -> None:
    app = create_app(make_config())
    data = bytes(range(256)) * 400
    body = multipart([request_part(), file_part("big.bin", data)])
    chunks = [body[i : i + 777] for i in range(0, len(body), 777)]
    status, payload = call_asgi(app, "POST", "/v1/runs", {"content-type": CONTENT_TYPE}, chunks)
    assert status == 201, payload
    run_id = json.loads(payload)["id"]
    assert (workspace / run_id / "files" / "big.bin").read_bytes() == data


def test_client_disconnect_leaves_nothing_behind(make_config, workspace: Path) -> None:
    app = create_app(make_config())
    body = multipart([request_part(), file_part("a.bin", b"x" * 5000)])
    status, _ = call_asgi(
        app, "POST", "/v1/runs", {"content-type": CONTENT_TYPE}, [body[:3000]], disconnect=True
    )
    assert status == 400
    assert workspace_entries(workspace) == []


# --- workspace problems and methods --------------------------------------------


def test_unwritable_workspace_is_503(make_client, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    client = make_client({"STIGMER_WORKSPACE": str(not_a_dir)})
    assert_error(post_run(client, multipart([request_part()])), 503, "workspace not writable")


def test_get_on_runs_is_405_json(client) -> None:
    response = client.get("/v1/runs")
    assert_error(response, 405, "Method Not Allowed")


def test_unknown_path_is_404_json(client) -> None:
    assert_error(client.get("/nope"), 404, "Not Found")
