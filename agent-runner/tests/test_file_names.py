"""File names against the real server: only the documented Unicode categories, and no
name that a normalizing tool would turn into a path."""

from __future__ import annotations

import pytest
from helpers import file_part, multipart, post_raw, request_part

REFUSED = {
    "next\u0085line.txt": "U+0085, a control character",  # C1 NEXT LINE
    "csi\u009b31m.txt": "U+009B, a control character",  # C1 CSI
    "a\u2028b.txt": "U+2028, a line separator",
    "a\u2029b.txt": "U+2029, a paragraph separator",
    "invoice\u202eexe.txt": "U+202E, a format character",  # right-to-left override
    "zero\u200bwidth.txt": "U+200B, a format character",
    "\ufeffbom.txt": "U+FEFF, a format character",
    "soft\u00adhyphen.txt": "U+00AD, a format character",
    "no\u00a0break.txt": "U+00A0, a space other than U+0020",
    "private\ue000.txt": "U+E000, a private-use character",
    "unassigned\u0378.txt": "U+0378, an unassigned code point",
    "\uff0fetc\uff0fpasswd": "absolute paths are not allowed (the name's NFKC form is '/etc/passwd')",
    "\uff0e\uff0e": "'..' is not a file name (the name's NFKC form is '..')",
    "a\uff3cb": "path separators",
}

ACCEPTED = [
    "ünïcødé.md",
    "u\u0308mlaut-nfd.txt",  # combining mark, as macOS spells names
    "報告書.pdf",
    "🙂 smile.png",
    "name with spaces (1).txt",
    "∑-math+sym$bols€.txt",
]


@pytest.mark.parametrize("name", list(REFUSED), ids=[f"U+{ord(max(n)):04X}" for n in REFUSED])
def test_file_name_outside_the_safe_categories_is_400(shared_server, name: str) -> None:
    before = set(shared_server.workspace.iterdir())
    response = post_raw(shared_server.port, multipart([request_part(), file_part(name)]))
    assert response.status == 400, response
    assert REFUSED[name] in response.json()["error"]
    assert set(shared_server.workspace.iterdir()) == before


def test_file_names_in_the_safe_categories_are_stored_as_sent(shared_server) -> None:
    response = post_raw(shared_server.port, multipart([request_part(), *(file_part(n) for n in ACCEPTED)]))
    assert response.status == 201, response
    assert response.json()["files"] == ACCEPTED
    files = shared_server.workspace / response.json()["id"] / "files"
    assert sorted(p.name for p in files.iterdir()) == sorted(ACCEPTED)
