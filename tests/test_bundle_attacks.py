"""Hostile bundles, as an attacker would build them: real files, real races, real processes.

Each test is one attack from the hardening issue (or one of its family) and the defence that holds
it. Attacks that would exhaust memory if a defence regressed run in a child process under an
address-space limit (:func:`tests.limited.run_limited`), so a regression fails a test instead of
the machine; those children also report how many bytes they read and how much their peak memory
grew, which shows a refusal happened *before* the work, without any timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import sys
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import modelkit
from modelkit._manifest import MAX_BUNDLE_ENTRIES, parse_manifest
from modelkit._sources import DirectorySource
from tests.bundle_fixtures import (
    ARTIFACT,
    MANIFEST,
    assert_predicts_like,
    bundle_members,
    edit_manifest,
    fit_logistic,
    malicious_pickle,
    read_manifest,
    replace_artifact,
    save_bundle,
    symlink_member,
    write_zip,
)
from tests.limited import Outcome, run_limited

REFERENCE_CASES = "artifacts/reference-cases.json"

MIB = 2**20
GIB = 2**30
# hashlib.sha256(bytes(GIB)) and zlib.crc32(bytes(GIB)): computing them takes a second each.
ZEROS_SHA256 = "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"
ZEROS_CRC32 = 0x5B64C2B0
# Far less than the 1 GiB the attacks would need, enough for Python, numpy and pydantic.
CHILD_MEMORY = 512 * MIB

needs_fifos = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
needs_links = pytest.mark.skipif(sys.platform == "win32", reason="needs symbolic links")


# --------------------------------------------------------------------------------------------
# Fixtures and hostile files
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def estimator() -> Any:
    return fit_logistic()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, estimator: Any) -> Path:
    return save_bundle(estimator, tmp_path_factory.mktemp("template") / "iris")


@pytest.fixture
def bundle(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "iris"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """Where a malicious pickle would leave its mark, were it ever unpickled."""
    return tmp_path / "unpickled-marker"


def with_artifacts(template: Path, artifacts: list[dict[str, Any]]) -> bytes:
    """The template's manifest, listing ``artifacts`` instead of its own."""
    document = read_manifest(template)
    document["artifacts"] = artifacts
    return json.dumps(document).encode()


def huge_artifact(size: int = GIB) -> dict[str, Any]:
    """An honest manifest entry for ``size`` zero bytes (its hash is right for 1 GiB)."""
    return {"path": ARTIFACT, "sha256": ZEROS_SHA256, "size": size}


@pytest.fixture
def sparse_bundle(template: Path, tmp_path: Path) -> Path:
    """A bundle that honestly declares a 1 GiB artifact: a sparse file, nothing on disk."""
    bundle = Path(shutil.copytree(template, tmp_path / "sparse"))
    (bundle / REFERENCE_CASES).unlink()  # the one artifact is the model's
    with open(bundle / ARTIFACT, "wb") as handle:
        handle.truncate(GIB)
    (bundle / MANIFEST).write_bytes(with_artifacts(template, [huge_artifact()]))
    return bundle


def deflated_zeros(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes (a multiple of 1 MiB), about size / 1000 long.

    Each fully flushed block stands alone, so one compressed MiB repeats; compressing the whole
    size would take seconds.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size // MIB) + b"\x03\x00"  # an empty final block


class Member(NamedTuple):
    """A zip member as it is written: ``payload`` already compressed with ``method``."""

    name: str
    method: int
    payload: bytes
    crc32: int
    size: int
    flags: int = 0


def stored(name: str, data: bytes) -> Member:
    return Member(name, zipfile.ZIP_STORED, data, zlib.crc32(data), len(data))


def write_raw_zip(archive: Path, members: list[Member]) -> Path:
    """Write a zip byte by byte. zipfile cannot write a member it did not compress itself, a
    corrupt one, or one that claims another method."""
    body, directory = bytearray(), bytearray()
    for member in members:
        name, offset = member.name.encode(), len(body)
        common = (member.flags, member.method, 0, 33, member.crc32, len(member.payload))
        sizes = (member.size, len(name), 0)
        body += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, *common, *sizes) + name
        body += member.payload
        directory += struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, *common, *sizes, 0, 0, 0,
            0o644 << 16, offset,
        )  # fmt: skip
        directory += name
    count = len(members)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(body), 0)
    archive.write_bytes(bytes(body + directory + end))
    return archive


@pytest.fixture
def zip_bomb(template: Path, tmp_path: Path) -> Path:
    """A 1 MB zip whose artifact honestly inflates to 1 GiB of zeros."""
    manifest = with_artifacts(template, [huge_artifact()])
    bomb = Member(ARTIFACT, zipfile.ZIP_DEFLATED, deflated_zeros(GIB), ZEROS_CRC32, GIB)
    return write_raw_zip(tmp_path / "bomb.zip", [stored(MANIFEST, manifest), bomb])


def attack(call: str) -> dict[str, Any]:
    """Run ``call`` (an expression using ``modelkit``) in a child under a memory limit.

    Returns what happened: ``error`` (the exception's type) with ``path`` and ``message``, or
    ``value``; and always ``read`` (bytes read meanwhile) and ``grew`` (how far the peak
    resident memory rose, in bytes). ``verify(*arguments)`` runs ``modelkit verify`` and returns
    what it printed.
    """
    outcome: Outcome = run_limited(
        f"""
        import contextlib, io, resource
        import modelkit, modelkit.cli

        def bytes_read():
            with open("/proc/self/io") as io_stats:
                return int(io_stats.read().split("rchar:")[1].split()[0])

        def verify(*arguments):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                modelkit.cli.main(["verify", *arguments])
            return printed.getvalue()

        before, peak_before = bytes_read(), peak()
        try:
            value = {call}
        except modelkit.ModelkitError as exc:
            facts = dict(error=type(exc).__name__, path=exc.path, message=str(exc))
        else:
            facts = dict(value=value if isinstance(value, (str, int)) else repr(value))
        report(read=bytes_read() - before, grew=peak() - peak_before, **facts)
        """,
        memory=CHILD_MEMORY,
    )
    assert outcome.result is not None, (
        "the child died" + (" of MemoryError" if outcome.ran_out_of_memory else "")
    ) + f":\n{outcome.stderr[-3000:]}"
    return outcome.result


@pytest.fixture
def after_listing(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    """Make a real change to the bundle right after modelkit lists it: the racing attacker's
    window. The listing runs unchanged; the change is a real filesystem operation."""

    def install(change: Callable[[], None]) -> None:
        listed = DirectorySource.files

        def files_then_change(self: Any) -> dict[str, int]:
            found = listed(self)
            change()
            return found

        monkeypatch.setattr(DirectorySource, "files", files_then_change)

    return install


@contextlib.contextmanager
def released_if_blocked(fifo: Path) -> Iterator[None]:
    """Fail instead of hanging if the code under test blocks opening ``fifo``.

    The regression these tests catch is an open that waits forever for a writer: if the code has
    not finished after a generous while, a writer opens and closes the other end (again each
    second, for code that opens it twice), which lets it go on, and the test fails on the flag
    this leaves.
    """
    finished = threading.Event()
    released: list[bool] = []

    def release() -> None:
        patience = 60.0
        while not finished.wait(patience):
            released.append(True)
            with contextlib.suppress(OSError):  # ENXIO: nobody is waiting on it right now
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            patience = 1.0

    watchdog = threading.Thread(target=release, daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        finished.set()
        watchdog.join()
    assert not released, f"opening {fifo} blocked until a writer came"


# --------------------------------------------------------------------------------------------
# Size: the pin before any artifact, a budget before any read, hashing in bounded chunks
# --------------------------------------------------------------------------------------------


def test_digest_comes_from_the_manifest_alone(bundle: Path) -> None:
    # The pin can be checked before any artifact is read because this holds.
    manifest, digest = parse_manifest((bundle / MANIFEST).read_bytes(), str(bundle))

    assert digest == modelkit.digest(bundle)
    assert manifest == modelkit.load(bundle).manifest


def test_wrong_pin_refuses_a_huge_artifact_before_reading_it(sparse_bundle: Path) -> None:
    result = attack(f"modelkit.load({str(sparse_bundle)!r}, sha256={'0' * 64!r})")

    assert result["error"] == "IntegrityError"
    assert result["path"] == str(sparse_bundle)
    assert "not the pinned" in result["message"]
    assert result["read"] < 10 * MIB
    assert result["grew"] < 64 * MIB


def test_wrong_pin_refuses_a_zip_bomb_before_inflating_it(zip_bomb: Path) -> None:
    result = attack(f"modelkit.load({str(zip_bomb)!r}, sha256={'0' * 64!r})")

    assert result["error"] == "IntegrityError"
    assert "not the pinned" in result["message"]
    assert result["grew"] < 64 * MIB


def test_wrong_pin_is_reported_before_the_file_list(bundle: Path, template: Path) -> None:
    (bundle / "artifacts" / "unlisted.bin").write_bytes(b"x")
    edit_manifest(bundle, lambda document: document["metadata"].update(changed=True))

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle, sha256=modelkit.digest(template))

    assert caught.value.path == str(bundle)
    assert "pinned" in str(caught.value)


@pytest.mark.parametrize("call", ["load", "digest"])
def test_bundle_declaring_more_than_the_size_limit_is_refused_before_reading(
    sparse_bundle: Path, call: str
) -> None:
    result = attack(f"modelkit.{call}({str(sparse_bundle)!r}, max_bundle_size={512 * MIB})")

    assert result["error"] == "BundleError"
    assert result["path"] == str(sparse_bundle)
    assert f"declares {GIB} bytes of artifacts" in result["message"]
    assert "max_bundle_size" in result["message"]
    assert result["read"] < 10 * MIB


def test_default_size_limit_refuses_a_bundle_declaring_3_gib(
    template: Path, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(template, tmp_path / "huge"))
    with open(bundle / ARTIFACT, "wb") as handle:
        handle.truncate(3 * GIB)
    (bundle / MANIFEST).write_bytes(with_artifacts(template, [huge_artifact(3 * GIB)]))

    result = attack(f"modelkit.load({str(bundle)!r})")

    assert result["error"] == "BundleError"
    assert "the size limit is 2147483648 bytes (2 GiB)" in result["message"]
    assert result["read"] < 10 * MIB


def test_zip_bomb_within_the_declared_size_is_refused_by_the_size_limit(zip_bomb: Path) -> None:
    result = attack(f"modelkit.load({str(zip_bomb)!r}, max_bundle_size={100 * MIB})")

    assert result["error"] == "BundleError"
    assert result["grew"] < 64 * MIB


def test_digest_hashes_a_1_gib_artifact_in_bounded_memory(sparse_bundle: Path) -> None:
    result = attack(f"modelkit.digest({str(sparse_bundle)!r})")

    _manifest, digest = parse_manifest((sparse_bundle / MANIFEST).read_bytes(), "")
    assert result["value"] == digest
    assert result["read"] >= GIB  # every byte was hashed...
    assert result["grew"] < 64 * MIB  # ...without being held


def test_verify_inflates_and_hashes_a_zip_bomb_in_bounded_memory(zip_bomb: Path) -> None:
    result = attack(f"verify({str(zip_bomb)!r})")

    digest = parse_manifest(zipfile.ZipFile(zip_bomb).read(MANIFEST), "")[1]
    assert result["value"] == f"OK {zip_bomb} {digest}\n"
    assert result["grew"] < 64 * MIB


def test_verify_max_size_refuses_before_reading(sparse_bundle: Path) -> None:
    result = attack(f"verify('--max-size', '512MiB', {str(sparse_bundle)!r})")

    assert result["value"].startswith(f"FAILED {sparse_bundle}: ")
    assert "size limit" in result["value"]
    assert result["read"] < 10 * MIB


@pytest.mark.parametrize("limit", [None, "exact", "numpy"])
def test_bundle_within_the_size_limit_loads(bundle: Path, estimator: Any, limit: Any) -> None:
    import numpy as np

    exact = sum(a["size"] for a in read_manifest(bundle)["artifacts"])
    size = {None: None, "exact": exact, "numpy": np.int64(exact)}[limit]

    assert_predicts_like(modelkit.load(bundle, max_bundle_size=size), estimator)


def test_one_byte_over_the_size_limit_is_refused(bundle: Path) -> None:
    size = (bundle / ARTIFACT).stat().st_size

    with pytest.raises(modelkit.BundleError, match="size limit") as caught:
        modelkit.load(bundle, max_bundle_size=size - 1)

    assert not isinstance(caught.value, modelkit.IntegrityError)
    assert caught.value.path == str(bundle)


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), ("2GiB", TypeError), (True, TypeError), (1.5, TypeError)]
)
def test_size_limit_that_is_not_a_number_of_bytes_is_refused(
    bundle: Path, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="max_bundle_size"):
        modelkit.load(bundle, max_bundle_size=value)


def test_bare_onnx_file_larger_than_the_size_limit_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    bare = tmp_path / "model.onnx"
    with open(bare, "wb") as handle:
        handle.truncate(3 * GIB)

    result = attack(f"modelkit.load({str(bare)!r})")

    assert result["error"] == "BundleError"
    assert f"is {3 * GIB} bytes" in result["message"]
    assert result["read"] < 10 * MIB


@needs_links
def test_endless_device_named_like_a_model_is_refused_without_reading(tmp_path: Path) -> None:
    # /dev/zero never ends: reading it "whole" would fill memory.
    (tmp_path / "model.onnx").symlink_to("/dev/zero")

    result = attack(f"modelkit.load({str(tmp_path / 'model.onnx')!r})")

    assert result["error"] == "BundleError"
    assert "neither a directory nor a regular file" in result["message"]
    assert result["read"] < 10 * MIB


# --------------------------------------------------------------------------------------------
# Races between listing and opening, FIFOs and links
# --------------------------------------------------------------------------------------------


@needs_fifos
def test_artifact_swapped_for_a_fifo_after_listing_is_refused_without_blocking(
    bundle: Path, after_listing: Callable[[Callable[[], None]], None]
) -> None:
    artifact = bundle / ARTIFACT

    def swap() -> None:
        artifact.unlink()
        os.mkfifo(artifact)

    after_listing(swap)

    with released_if_blocked(artifact), pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert caught.value.path == ARTIFACT
    assert "not a regular file" in str(caught.value)


@needs_fifos
def test_manifest_swapped_for_a_fifo_after_listing_is_refused_without_blocking(
    bundle: Path, after_listing: Callable[[Callable[[], None]], None]
) -> None:
    manifest = bundle / MANIFEST

    def swap() -> None:
        manifest.unlink()
        os.mkfifo(manifest)

    after_listing(swap)

    with released_if_blocked(manifest), pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.digest(bundle)

    assert caught.value.path == MANIFEST


@needs_links
def test_artifacts_directory_swapped_for_a_link_after_listing_reads_nothing_outside(
    bundle: Path, tmp_path: Path, after_listing: Callable[[Callable[[], None]], None]
) -> None:
    # A genuine copy waits outside: following the link would pass every hash.
    outside = tmp_path / "outside"

    def swap() -> None:
        shutil.move(bundle / "artifacts", outside)
        (bundle / "artifacts").symlink_to(outside, target_is_directory=True)

    after_listing(swap)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert caught.value.path == "artifacts"
    assert "changed while the bundle was read" in str(caught.value)


@needs_links
def test_artifact_swapped_for_a_link_after_listing_is_refused(
    bundle: Path, tmp_path: Path, after_listing: Callable[[Callable[[], None]], None]
) -> None:
    outside = tmp_path / "outside.joblib"

    def swap() -> None:
        shutil.move(bundle / ARTIFACT, outside)
        (bundle / ARTIFACT).symlink_to(outside)

    after_listing(swap)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert caught.value.path == ARTIFACT


def test_artifacts_directory_swapped_for_a_file_after_listing_is_refused(
    bundle: Path, after_listing: Callable[[Callable[[], None]], None]
) -> None:
    def swap() -> None:
        shutil.rmtree(bundle / "artifacts")
        (bundle / "artifacts").write_bytes(b"not a directory")

    after_listing(swap)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert caught.value.path == "artifacts"


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="counts reads in /proc")
def test_artifact_grown_after_listing_is_refused_reading_one_byte_past_its_size(
    bundle: Path, after_listing: Callable[[Callable[[], None]], None]
) -> None:
    # A regular file is read in one call of the size it has when opened, but never past the
    # size the manifest declares (and one byte more, which shows it is longer).
    artifact = bundle / ARTIFACT
    declared = artifact.stat().st_size
    after_listing(lambda: os.truncate(artifact, GIB))

    def bytes_read() -> int:
        with open("/proc/self/io") as stats:
            return int(stats.read().split("rchar:")[1].split()[0])

    before = bytes_read()
    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert caught.value.path == ARTIFACT
    assert "is longer; the manifest says" in str(caught.value)
    assert bytes_read() - before < declared + MIB


def test_artifact_truncated_after_listing_is_refused(
    bundle: Path, after_listing: Callable[[Callable[[], None]], None]
) -> None:
    artifact = bundle / ARTIFACT
    declared = artifact.stat().st_size
    after_listing(lambda: os.truncate(artifact, declared // 2))

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert caught.value.path == ARTIFACT
    assert f"is {declared // 2} bytes; the manifest says {declared}" in str(caught.value)


@needs_fifos
@pytest.mark.parametrize("name", ["bundle", "model.onnx", "model.zip"])
def test_bundle_path_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path, name: str) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)

    with released_if_blocked(fifo), pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(fifo)

    assert caught.value.path == str(fifo)
    assert "FIFO" in str(caught.value)


@needs_fifos
@needs_links
def test_link_to_a_fifo_as_the_bundle_path_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "current").symlink_to(fifo)

    with released_if_blocked(fifo), pytest.raises(modelkit.BundleError):
        modelkit.digest(tmp_path / "current")


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")
def test_socket_inside_the_bundle_is_refused(bundle: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        try:
            server.bind(str(bundle / "artifacts" / "socket"))
        except OSError as exc:  # a path too long for sun_path
            pytest.skip(f"cannot bind a socket here: {exc}")

        with pytest.raises(modelkit.IntegrityError) as caught:
            modelkit.load(bundle)

    assert caught.value.path == "artifacts/socket"


@needs_links
def test_bundle_path_may_still_be_a_link_to_a_bundle(
    bundle: Path, tmp_path: Path, estimator: Any
) -> None:
    (tmp_path / "current").symlink_to(bundle, target_is_directory=True)

    assert_predicts_like(modelkit.load(tmp_path / "current"), estimator)


def test_directory_with_more_entries_than_a_manifest_can_list_is_refused(bundle: Path) -> None:
    crowd = bundle / "artifacts" / "crowd"
    crowd.mkdir()
    for index in range(MAX_BUNDLE_ENTRIES):
        (crowd / str(index)).touch()

    with pytest.raises(modelkit.BundleError, match="more than 10000 files") as caught:
        modelkit.load(bundle)

    assert caught.value.path == str(bundle)


# --------------------------------------------------------------------------------------------
# Archives: corrupt members, unbounded decompressors, zipfile.Path
# --------------------------------------------------------------------------------------------


def test_corrupt_deflate_member_is_an_integrity_error_naming_it(
    template: Path, tmp_path: Path
) -> None:
    # Deflate block type 3 does not exist: zlib fails on the first byte.
    artifact = (template / ARTIFACT).read_bytes()
    corrupt = Member(
        ARTIFACT, zipfile.ZIP_DEFLATED, b"\xff" * 64, zlib.crc32(artifact), len(artifact)
    )
    manifest = stored(MANIFEST, (template / MANIFEST).read_bytes())
    cases = stored(REFERENCE_CASES, (template / REFERENCE_CASES).read_bytes())
    archive = write_raw_zip(tmp_path / "m.zip", [manifest, corrupt, cases])

    for call in (modelkit.load, modelkit.digest):
        with pytest.raises(modelkit.IntegrityError) as caught:
            call(archive)
        assert caught.value.path == ARTIFACT
        assert "invalid block type" in str(caught.value)


def test_corrupt_deflated_manifest_is_an_integrity_error_naming_it(
    template: Path, tmp_path: Path
) -> None:
    manifest = (template / MANIFEST).read_bytes()
    corrupt = Member(
        MANIFEST, zipfile.ZIP_DEFLATED, b"\xff" * 64, zlib.crc32(manifest), len(manifest)
    )
    artifact = stored(ARTIFACT, (template / ARTIFACT).read_bytes())
    archive = write_raw_zip(tmp_path / "m.zip", [corrupt, artifact])

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(archive)

    assert caught.value.path == MANIFEST


def test_bzip2_member_is_refused_before_it_is_decompressed(template: Path, tmp_path: Path) -> None:
    # zipfile inflates a bzip2 member in one call, whatever is asked of it: 64 MiB of zeros
    # hide in a few hundred bytes, behind a manifest that declares 100.
    import bz2

    compressor = bz2.BZ2Compressor(9)
    payload = b"".join(compressor.compress(bytes(MIB)) for _ in range(64)) + compressor.flush()
    manifest = with_artifacts(template, [{"path": ARTIFACT, "sha256": "0" * 64, "size": 100}])
    member = Member(ARTIFACT, zipfile.ZIP_BZIP2, payload, 0, 100)
    archive = write_raw_zip(tmp_path / "m.zip", [stored(MANIFEST, manifest), member])

    result = attack(f"modelkit.load({str(archive)!r})")

    assert result["error"] == "BundleError"
    assert result["path"] == ARTIFACT
    assert "stored or deflated" in result["message"]
    assert result["grew"] < 32 * MIB


@pytest.mark.parametrize(
    ("method", "flags", "says"),
    [
        pytest.param(zipfile.ZIP_LZMA, 0, "stored or deflated", id="lzma"),
        pytest.param(99, 0, "stored or deflated", id="aes"),
        pytest.param(zipfile.ZIP_STORED, 1, "encrypted", id="encrypted"),
    ],
)
def test_member_that_zipfile_cannot_read_boundedly_is_a_bundle_error(
    template: Path, tmp_path: Path, method: int, flags: int, says: str
) -> None:
    artifact = (template / ARTIFACT).read_bytes()
    member = Member(ARTIFACT, method, artifact, zlib.crc32(artifact), len(artifact), flags)
    manifest = stored(MANIFEST, (template / MANIFEST).read_bytes())
    archive = write_raw_zip(tmp_path / "m.zip", [manifest, member])

    with pytest.raises(modelkit.BundleError, match=says) as caught:
        modelkit.load(archive)

    assert caught.value.path == ARTIFACT


def test_zip_with_more_members_than_a_manifest_can_list_is_refused(
    template: Path, tmp_path: Path
) -> None:
    members = bundle_members(template)
    crowd = [(f"artifacts/crowd/{index}", b"") for index in range(MAX_BUNDLE_ENTRIES)]
    archive = write_zip(tmp_path / "m.zip", [*members, *crowd])

    with pytest.raises(modelkit.BundleError, match="more than 10000 files"):
        modelkit.load(archive)


def _zipped_app(tmp_path: Path, members: list[tuple[Any, bytes]]) -> zipfile.Path:
    """An application archive (wheel, zipapp) holding the bundle as package data, and the
    zipfile.Path of its bundle directory, as importlib.resources gives it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        archive = write_zip(
            tmp_path / "app.zip",
            [("app/__init__.py", b""), ("app/data/../../evil", b"not the bundle's"), *members],
        )
    return zipfile.Path(archive, "app/bundles/iris/")


def test_zipfile_path_bundle_loads_and_ignores_members_outside_it(
    template: Path, tmp_path: Path, estimator: Any
) -> None:
    resource = _zipped_app(tmp_path, bundle_members(template, prefix="app/bundles/iris/"))

    assert_predicts_like(modelkit.load(resource), estimator)
    assert modelkit.digest(resource) == modelkit.digest(template)


def test_zipfile_path_with_a_duplicated_member_is_refused_before_unpickling(
    template: Path, bundle: Path, tmp_path: Path, marker: Path
) -> None:
    # zipfile.Path reads the last of two equal names, and the manifest vouches for that one.
    replace_artifact(bundle, malicious_pickle(marker), rehash=True)
    genuine = bundle_members(template, prefix="app/bundles/iris/")
    hostile = bundle_members(bundle, prefix="app/bundles/iris/")
    resource = _zipped_app(tmp_path, [*genuine, *hostile])

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(resource)

    assert "twice" in str(caught.value)
    assert not marker.exists()


def test_zipfile_path_with_a_symlink_member_is_refused(template: Path, tmp_path: Path) -> None:
    prefix = "app/bundles/iris/"
    members = [(n, d) for n, d in bundle_members(template, prefix=prefix) if n != prefix + ARTIFACT]
    resource = _zipped_app(tmp_path, [*members, symlink_member(prefix + ARTIFACT, "/etc/passwd")])

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(resource)

    assert caught.value.path == prefix + ARTIFACT
    assert "symbolic link" in str(caught.value)


def test_zipfile_path_to_a_duplicated_bare_model_is_refused(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        archive = write_zip(tmp_path / "app.zip", [("m/model.onnx", b"a"), ("m/model.onnx", b"b")])

    with pytest.raises(modelkit.IntegrityError, match="2 times"):
        modelkit.load(zipfile.Path(archive, "m/model.onnx"))


# --------------------------------------------------------------------------------------------
# Manifests: errors stay in the documented tree; types are strict
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d["metadata"].update(note="\ud800"), id="metadata-value"),
        pytest.param(lambda d: d["metadata"].update({"\udfff": 1}), id="metadata-key"),
        pytest.param(lambda d: d.update(name="iris\ud800"), id="name"),
    ],
)
def test_lone_surrogate_in_the_manifest_is_a_bundle_error(
    bundle: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    edit_manifest(bundle, change)  # json.dumps writes the \ud800 escape, as an attacker would
    assert b"\\ud" in (bundle / MANIFEST).read_bytes()

    for call in (modelkit.load, modelkit.digest):
        with pytest.raises(modelkit.BundleError) as caught:
            call(bundle)
        assert caught.value.path == MANIFEST
        assert "surrogate" in str(caught.value)


def test_number_too_large_for_a_float_is_a_bundle_error(bundle: Path) -> None:
    # 1e999 parses to infinity, which the digest's canonical JSON cannot hold.
    text = (bundle / MANIFEST).read_text(encoding="utf-8")
    (bundle / MANIFEST).write_text(
        text.replace('"metadata": {}', '"metadata": {"score": 1e999}'), encoding="utf-8"
    )

    for call in (modelkit.load, modelkit.digest):
        with pytest.raises(modelkit.BundleError) as caught:
            call(bundle)
        assert caught.value.path == MANIFEST


def _set(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(node[path[-1]]) if callable(value) else value

    return change


@pytest.mark.parametrize(
    ("change", "where"),
    [
        pytest.param(_set("artifacts", 0, "size", value=str), "artifacts.0.size", id="size-string"),
        pytest.param(
            _set("artifacts", 0, "size", value=float), "artifacts.0.size", id="size-float"
        ),
        pytest.param(_set("format_version", value=True), "format_version", id="version-true"),
        pytest.param(_set("format_version", value=1.0), "format_version", id="version-float"),
        pytest.param(_set("created_at", value=0), "created_at", id="created-at-number"),
        pytest.param(
            _set("created_at", value="2026-11-27T23:33:29"), "created_at", id="created-at-naive"
        ),
        pytest.param(
            _set("artifacts", 0, "sha256", value=lambda v: v + "\n"),
            "artifacts.0.sha256",
            id="sha256-newline",
        ),
        pytest.param(
            _set("environment", "packages", "numpy\n", value="2.0"),
            "environment.packages",
            id="package-newline",
        ),
        pytest.param(
            _set("signature", "outputs", "has_probabilities", value="true"),
            "signature.outputs.has_probabilities",
            id="nested-bool-string",
        ),
    ],
)
def test_manifest_value_of_a_loose_type_is_refused(
    bundle: Path, change: Callable[[dict[str, Any]], None], where: str
) -> None:
    edit_manifest(bundle, change)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert caught.value.path == MANIFEST
    assert f"invalid: {where}" in str(caught.value)


EXAMPLE_BUNDLES = sorted(
    path.parent for path in Path(__file__).parents[1].glob("examples/**/bundles/*/modelkit.json")
)


@pytest.mark.parametrize("example", EXAMPLE_BUNDLES, ids=lambda path: path.parent.parent.name)
def test_example_bundles_pass_strict_validation(example: Path) -> None:
    manifest, digest = parse_manifest((example / MANIFEST).read_bytes(), str(example))

    assert modelkit.digest(example) == digest
    assert manifest.artifacts


def test_manifest_written_by_save_passes_strict_validation(template: Path) -> None:
    manifest, _digest = parse_manifest((template / MANIFEST).read_bytes(), "")

    assert manifest == modelkit.load(template).manifest
