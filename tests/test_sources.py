"""Reading a bundle's files: bounded, hashed on the way, and kept in one buffer."""

from __future__ import annotations

import hashlib
import io
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from modelkit import _sources
from modelkit._sources import consume


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=64),
    limit=st.none() | st.integers(0, 80),
    available=st.none() | st.integers(0, 80),
    keep=st.booleans(),
    chunk=st.integers(1, 16),
)
def test_consume_reads_what_is_there_within_the_limit_whatever_the_size_said(
    data: bytes, limit: int | None, available: int | None, keep: bool, chunk: int
) -> None:
    # ``available`` is what the file said when it was opened; it may have grown or shrunk since.
    # Whatever it said, what is read is what is there, at most one byte past the limit.
    expected = data if limit is None else data[: limit + 1]
    handle = io.BytesIO(data)
    with mock.patch.object(_sources, "_CHUNK", chunk):
        found = consume(handle, limit, keep=keep, available=available)
    assert found.size == len(expected)
    assert found.sha256 == hashlib.sha256(expected).hexdigest()
    assert found.data == (expected if keep else None)
    assert handle.tell() == len(expected)


def test_consume_reads_a_file_of_known_size_in_one_call() -> None:
    data = bytes(range(256)) * 4096
    handle = io.BytesIO(data)
    reads: list[int] = []
    original = handle.read

    def read(size: int = -1) -> bytes:
        reads.append(size)
        return original(size)

    handle.read = read  # type: ignore[method-assign]
    found = consume(handle, len(data), keep=True, available=len(data))
    assert found.data == data
    assert reads == [len(data) + 1, 1]
