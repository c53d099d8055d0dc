"""Atomic single-file writes: the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelkit import _atomic
from modelkit._atomic import AtomicFile, write_atomically


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".partial"))


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "models.lock"
    target.write_text("old\n", encoding="utf-8")
    write_atomically(target, "new\r\nlines as given\n")
    assert target.read_bytes() == b"new\r\nlines as given\n"
    write_atomically(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert leftovers(tmp_path) == []


def test_a_crash_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "predictions.csv"
    target.write_text("the old, complete file\n", encoding="utf-8")

    def write_new_file() -> None:
        with AtomicFile(target) as file:
            file.handle.write("half of the new ")
            raise OSError("the writer fails halfway")

    with pytest.raises(OSError, match="halfway"):
        write_new_file()
    assert target.read_text(encoding="utf-8") == "the old, complete file\n"
    assert leftovers(tmp_path) == []


def test_a_failed_sync_or_rename_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "models.lock"
    target.write_text("old\n", encoding="utf-8")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, "new\n")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert leftovers(tmp_path) == []


def test_nothing_is_visible_at_the_target_until_commit(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    file = AtomicFile(target)
    file.handle.write("{}\n")
    assert not target.exists()
    assert file.temporary.parent == tmp_path  # a sibling: the rename stays on one filesystem
    file.commit()
    assert target.read_text(encoding="utf-8") == "{}\n"
    assert leftovers(tmp_path) == []


def test_discard_removes_the_temporary_and_keeps_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    file = AtomicFile(target, binary=True)
    file.handle.write(b"partial")
    file.discard()
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_a_missing_directory_is_reported_with_the_target(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "out.csv"
    with pytest.raises(FileNotFoundError) as info:
        AtomicFile(target)
    assert info.value.strerror == f"Cannot write {str(target)!r}: its directory does not exist."


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_link_planted_at_the_temporary_name_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched", encoding="utf-8")
    monkeypatch.setattr(_atomic.secrets, "token_hex", lambda _: "guessed")
    (tmp_path / ".out.guessed.partial").symlink_to(victim)
    with pytest.raises(FileExistsError):
        AtomicFile(tmp_path / "out")
    assert victim.read_text(encoding="utf-8") == "untouched"
