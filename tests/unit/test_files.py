"""Crash-safe local writes: services.files."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.files import fsync_dir, fsync_file, replacing, write_atomic


def test_write_atomic_replaces_the_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    write_atomic(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_write_atomic_creates_missing_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.bin"
    write_atomic(str(target), b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_str_is_written_as_utf8(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    text = "drift ≥ 0.2 — naïve café ✓"
    write_atomic(target, text)
    assert target.read_bytes() == text.encode("utf-8")


def test_failed_block_keeps_the_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "book.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("half written")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["book.json"]


def test_replacing_commits_what_the_block_wrote(tmp_path: Path) -> None:
    target = tmp_path / "data.parquet"
    with replacing(target) as tmp:
        tmp.write_bytes(b"payload")
        assert not target.exists()  # nothing visible before the commit
    assert target.read_bytes() == b"payload"
    assert [p.name for p in tmp_path.iterdir()] == ["data.parquet"]


def test_fsync_helpers_accept_files_and_directories(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fsync_file(path)
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "missing")  # no directory fd: a no-op, not an error


def test_files_get_the_requested_mode_not_mkstemps_owner_only(tmp_path: Path) -> None:
    write_atomic(tmp_path / "report.html", "x")
    write_atomic(tmp_path / "secret.bin", b"k", mode=0o600)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "secret.bin").stat().st_mode & 0o777 == 0o600
