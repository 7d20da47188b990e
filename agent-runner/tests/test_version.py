from __future__ import annotations


def test_version_defaults_to_unknown(client) -> None:
    response = client.get("/version")
    assert response.status_code == 200
    assert response.json() == {"version": "unknown", "revision": "unknown", "build_date": "unknown"}


def test_version_from_build_env(make_client) -> None:
    client = make_client(
        {
            "STIGMER_VERSION": "1.2.3",
            "STIGMER_REVISION": "0123456789abcdef",
            "STIGMER_BUILD_DATE": "2025-01-02T03:04:05Z",
        }
    )
    assert client.get("/version").json() == {
        "version": "1.2.3",
        "revision": "0123456789abcdef",
        "build_date": "2025-01-02T03:04:05Z",
    }


def test_blank_build_env_counts_as_unset(make_client) -> None:
    # The image sets ENV from build args; an omitted build arg gives "".
    client = make_client({"STIGMER_VERSION": "", "STIGMER_REVISION": " ", "STIGMER_BUILD_DATE": ""})
    assert client.get("/version").json() == {"version": "unknown", "revision": "unknown", "build_date": "unknown"}


def test_version_is_get_only(client) -> None:
    assert client.post("/version").status_code == 405
