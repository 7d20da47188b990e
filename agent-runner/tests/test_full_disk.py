"""A full workspace, on a real small file system: 507, nothing left behind, /healthz
says so and recovers."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Server, file_part, get, multipart, post_raw, request_part, start_server_process

DISK_BYTES = 2 * 1024 * 1024


def _as_root(args: list[str]) -> list[str]:
    """``args`` as root: directly when the tests run as root (our machines, CI), else
    through passwordless sudo (a GitHub runner), which fails at once if it would ask."""
    return args if os.geteuid() == 0 else ["sudo", "-n", *args]


def _mount(args: list[str]) -> str | None:
    """None when mounted, else why not."""
    args = _as_root(args)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return f"{args[0]}: {exc}"
    return None if done.returncode == 0 else f"{' '.join(args)}: {done.stderr.strip() or done.returncode}"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """One server for the module; each test mounts its own small disk over its
    workspace (the server keeps nothing open there between requests)."""
    server = start_server_process(tmp_path_factory.mktemp("full-disk"), {})
    server.wait_healthy()
    yield server
    server.stop()


@pytest.fixture
def small_disk(server: Server, tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount a 2 MB file system (tmpfs, else an ext4 image on a loop device) over the
    server's workspace and give its path. ``inodes`` limits the number of files."""
    point = server.workspace
    mounted: list[bool] = []

    def mount(inodes: int | None = None) -> Path:
        # Owned by whoever runs the server, as its workspace was.
        options = f"size={DISK_BYTES},uid={os.getuid()},gid={os.getgid()}" + (f",nr_inodes={inodes}" if inodes else "")
        problems = [_mount(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)])]
        if problems[0] is not None and inodes is None:
            image = tmp_path / "disk.img"
            with open(image, "wb") as fh:
                fh.truncate(4 * DISK_BYTES)
            problems.append(_mount(["mkfs.ext4", "-q", "-F", str(image)]))
            if problems[-1] is None:
                problems.append(_mount(["mount", "-o", "loop", str(image), str(point)]))
        if problems[-1] is not None:
            pytest.fail(
                "the full-disk tests need a small real file system: run the tests as root, or "
                "with passwordless sudo (they mount a 2 MB tmpfs, or an ext4 image on a loop device); "
                + "; ".join(p for p in problems if p)
            )
        mounted.append(True)
        return point

    yield mount
    if mounted:
        subprocess.run(_as_root(["umount", "-l", str(point)]), check=False, capture_output=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with a file, then give back ``leave`` bytes."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        block = b"\0" * 65536
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError:
            pass
    os.truncate(filler, max(0, os.path.getsize(filler) - leave))
    return filler


def used_bytes(disk: Path) -> int:
    st = os.statvfs(disk)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_disk_filling_in_small_pieces_is_507_and_leaves_no_partial_upload(small_disk, server) -> None:
    # The overflow happens with file data still in the write buffer: closing the file
    # hits the full disk a second time, which once hid the 507 and the clean-up.
    disk = small_disk()
    fill(disk, leave=64 * 1024)
    used = used_bytes(disk)

    body = multipart([request_part(), file_part("big.bin", b"x" * 200_000)])
    response = post_raw(server.port, body, piece=1000, pause=0.0005)

    assert (response.status, response.json()) == (507, {"error": "workspace is full"}), response
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    assert used_bytes(disk) == used


@pytest.mark.parametrize("where", ["file data", "request.json", "staging directory"])
def test_full_workspace_is_507_wherever_it_fills(small_disk, server, where: str) -> None:
    if where == "staging directory":
        disk = small_disk(inodes=16)
        n = 0
        try:
            while True:
                (disk / f"f{n}").touch()
                n += 1
        except OSError:
            pass
    else:
        disk = small_disk()
        fill(disk)
    before = sorted(p.name for p in disk.iterdir())
    data = b"x" * 300_000 if where == "file data" else None
    parts = [request_part()] + ([file_part("big.bin", data)] if data else [])

    response = post_raw(server.port, multipart(parts))

    assert (response.status, response.json()) == (507, {"error": "workspace is full"}), response
    assert sorted(p.name for p in disk.iterdir()) == before


def test_healthz_names_a_full_workspace_and_recovers(small_disk, server) -> None:
    disk = small_disk()
    assert get(server.url("/healthz"))[0] == 200
    filler = fill(disk)

    status, body = get(server.url("/healthz"))
    assert status == 503
    check = json.loads(body)["checks"]["workspace"]
    assert check.startswith(f"full: {disk}: "), check

    filler.unlink()
    status, body = get(server.url("/healthz"))
    assert (status, json.loads(body)["checks"]["workspace"]) == (200, "ok")
