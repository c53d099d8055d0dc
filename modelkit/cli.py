"""The ``modelkit`` command: inspect, verify, pin, convert, score, benchmark and serve bundles.

Run ``modelkit --help`` (or ``python -m modelkit --help``). Every command works with modelkit's
run-time dependencies alone, except ``predict`` on Parquet files (the ``parquet`` extra),
``convert`` (``convert``) and ``serve`` (``serve``).

Exit codes: 0 when the command did what it was asked; 1 when it failed (one line on stderr,
``modelkit: error: ...``; ``--debug`` adds the traceback) or a bundle failed verification; 2 for
usage errors (unknown command, bad or missing arguments), with a usage line.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import json
import math
import os
import platform
import re
import secrets
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, NoReturn

from ._bundle import DEFAULT_MAX_BUNDLE_SIZE
from ._version import __version__
from .errors import BundleError, IntegrityError, InvalidInputError, ModelkitError

if TYPE_CHECKING:
    from ._bundle import Manifest
    from ._model import Model
    from ._signature import ColumnSpec, Outputs, Table, TabularInputs

__all__ = ["main"]

PROG = "modelkit"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``modelkit`` command with ``argv`` (``sys.argv[1:]`` by default).

    Returns:
        The exit status: 0 success, 1 failure, 2 usage error (130 when interrupted).
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and --version exit 0, usage errors 2
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    with _cli_diagnostics():
        try:
            status: int = args.run(args)
        except _UsageError as exc:
            return _usage_error(args.command_parser, str(exc))
        except KeyboardInterrupt:
            _err().write(f"{PROG}: interrupted\n")
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line (or --debug)
            if args.debug:
                traceback.print_exc(file=sys.stderr)
            _err().write(f"{PROG}: error: {_error_message(exc, debug=args.debug)}\n")
            return EXIT_FAILURE
    return status


class _UsageError(Exception):
    """Arguments that parse but do not make sense together: exit 2 with a usage line."""


def _usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    try:
        parser.error(message)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def _error_message(exc: BaseException, *, debug: bool) -> str:
    if isinstance(exc, ModelkitError | ValueError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename!s}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    hint = "" if debug else " (run with --debug for the traceback)"
    return f"unexpected {type(exc).__name__}: {exc}{hint}"


@contextlib.contextmanager
def _cli_diagnostics() -> Iterator[None]:
    """Show modelkit's warnings as one ``modelkit: warning:`` line each, once.

    Loading logs a version mismatch on the ``modelkit`` logger and also issues an
    ``EnvironmentMismatchWarning``; a command shows the log line and silences the duplicate.
    """
    import logging

    from .errors import EnvironmentMismatchWarning

    logger = logging.getLogger("modelkit")
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_LOG_HANDLER)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # shown once, by this handler
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EnvironmentMismatchWarning)
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


_LOG_HANDLER = "modelkit-cli"


# -- the parser ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with click's "Did you mean" for a mistyped command."""

    def error(self, message: str) -> NoReturn:
        match = re.search(r"invalid choice: '([^']*)'", message)
        if match is not None and self._subparsers is not None:
            choices = [
                choice
                for action in self._subparsers._group_actions
                for choice in (getattr(action, "choices", None) or {})
            ]
            near = difflib.get_close_matches(match.group(1), choices, n=1)
            message = f"unknown command {match.group(1)!r}" + (
                f". Did you mean {near[0]!r}?" if near else f" (commands: {', '.join(choices)})"
            )
        super().error(message)


_FORMATTER = argparse.RawDescriptionHelpFormatter


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Inspect, verify, pin, convert, score, benchmark and serve modelkit bundles.",
        epilog=(
            "Exit status: 0 success, 1 failure (one line on stderr), 2 usage error.\n"
            f"Run '{PROG} COMMAND --help' for a command's options."
        ),
        formatter_class=_FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (for bug reports)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, run: Callable[[argparse.Namespace], int], summary: str, epilog: str = ""
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=epilog or None,
            formatter_class=_FORMATTER,
        )
        sub.set_defaults(run=run, command_parser=sub)
        # Also accepted after the command; SUPPRESS keeps it from undoing `modelkit --debug CMD`.
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return sub

    inspect = command(
        "inspect",
        _run_inspect,
        "Describe a bundle: identity, digest, signature, artifacts and recorded environment.",
        "The bundle is verified, never deserialized. The environment table compares the\n"
        "recorded library versions with this one: ok, differs (loading warns), incompatible\n"
        "or missing (loading refuses unless version_policy='ignore').\n\n"
        "example:\n  modelkit inspect bundles/churn --json",
    )
    inspect.add_argument("path", metavar="PATH", help="a bundle directory, .zip or .onnx file")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")

    verify = command(
        "verify",
        _run_verify,
        "Check bundles completely (file list, sizes, sha256), and against a lock file.",
        "Nothing is deserialized or held in memory, so it is safe on untrusted files. Prints\n"
        "'OK PATH DIGEST' or 'FAILED PATH: REASON' for every bundle given, even after a\n"
        "failure; exits 1 if any failed.\n\n"
        "examples:\n"
        "  modelkit verify bundles/churn bundles/risk.zip\n"
        "  modelkit verify --lock models.lock          # every bundle the lock names\n"
        "  modelkit verify --lock models.lock bundles/churn",
    )
    verify.add_argument("paths", metavar="PATH", nargs="*", help="bundles to verify")
    verify.add_argument(
        "--lock",
        metavar="FILE",
        help="each bundle's digest must equal this lock file's; without PATH, verify every "
        "bundle it names (relative paths are relative to the lock file)",
    )
    verify.add_argument(
        "--max-size",
        type=_byte_size,
        default=DEFAULT_MAX_BUNDLE_SIZE,
        metavar="BYTES",
        help="fail a bundle whose manifest declares more bytes of artifacts, before reading "
        "them (2GiB; takes KiB, MiB, GiB)",
    )

    lock = command(
        "lock",
        _run_lock,
        "Write a lock file with the digest of each bundle, as Registry.from_config(lock=) reads.",
        "Bundles given as PATHs are keyed by their manifest's name; with --config, every\n"
        "primary, canary and shadow the registry config names is locked under its key.\n"
        "Paths are written relative to the lock file's directory (for stdout: to the\n"
        "config's directory, or the working directory).\n\n"
        "examples:\n"
        "  modelkit lock bundles/churn bundles/risk --output models.lock\n"
        "  modelkit lock --config models.toml --output models.lock",
    )
    lock.add_argument("paths", metavar="PATH", nargs="*", help="bundles to lock")
    lock.add_argument("--config", metavar="FILE", help="a registry config (TOML) to lock")
    lock.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")

    schema = command(
        "schema",
        _run_schema,
        "Print the JSON Schema of a bundle's input record and output.",
        'Prints {"input": ..., "output": ...}; --part input (or output) prints that schema\n'
        "alone. The bundle is verified, never deserialized.\n\n"
        "example:\n  modelkit schema bundles/churn --part input --output churn.schema.json",
    )
    schema.add_argument("path", metavar="PATH", help="a bundle directory, .zip or .onnx file")
    schema.add_argument("--part", choices=("input", "output"), help="print one schema only")
    schema.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")

    predict = command(
        "predict",
        _run_predict,
        "Score a file of records (JSON lines, CSV or Parquet) into another, in chunks.",
        "Formats come from the extensions (.jsonl/.ndjson, .csv, .parquet/.pq) or the\n"
        "--input-format/--output-format flags. Output rows are the input columns followed by\n"
        "the predictions: label and probability_<class> for classifiers, value for\n"
        "regressors (--predictions-only writes the predictions alone). A bad row stops the\n"
        "run with its line number and field, and no output is left; with --rejects FILE, bad\n"
        "rows go there (JSON lines: line, field, error, content) and the rest is scored.\n\n"
        "examples:\n"
        "  modelkit predict bundles/churn --input customers.csv --output scores.csv\n"
        "  modelkit predict bundles/churn --input events.jsonl --output scores.parquet \\\n"
        "      --rejects rejects.jsonl",
    )
    predict.add_argument("path", metavar="PATH", help="the bundle to score with")
    predict.add_argument("--input", "-i", required=True, metavar="FILE", help="records to score")
    predict.add_argument(
        "--output", "-o", required=True, metavar="FILE", help="where to write the predictions"
    )
    predict.add_argument("--input-format", choices=_FORMAT_NAMES, help="override the extension")
    predict.add_argument("--output-format", choices=_FORMAT_NAMES, help="override the extension")
    predict.add_argument(
        "--rejects",
        metavar="FILE",
        help="write bad rows here (JSON lines) and score the rest, instead of failing",
    )
    predict.add_argument(
        "--predictions-only",
        action="store_true",
        help="write the prediction columns only, not the input columns",
    )
    predict.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help=f"records per chunk (default {DEFAULT_CHUNK_SIZE:,}); memory grows with it",
    )
    _add_version_policy(predict)
    predict.add_argument("--quiet", "-q", action="store_true", help="no progress and no summary")

    convert = command(
        "convert",
        _run_convert,
        "Convert a scikit-learn (joblib) bundle to ONNX, checked for parity first.",
        "Needs the 'convert' extra (skl2onnx). Nothing is written unless the converted model\n"
        "answers like the original on the sample and generated rows.\n\n"
        "example:\n  modelkit convert bundles/churn --to onnx --output bundles/churn-onnx",
    )
    convert.add_argument("path", metavar="PATH", help="the joblib bundle to convert")
    convert.add_argument("--to", choices=("onnx",), default="onnx", help="the target format")
    convert.add_argument("--output", "-o", required=True, metavar="DIR", help="the new bundle")
    convert.add_argument("--name", help="the new bundle's name (the source's by default)")
    convert.add_argument(
        "--model-version", metavar="VERSION", help="the new bundle's version (default: same)"
    )
    convert.add_argument("--sha256", metavar="DIGEST", help="the digest the source must have")
    convert.add_argument("--force", action="store_true", help="replace an existing bundle")

    pack = command(
        "pack",
        _run_pack,
        "Verify a bundle directory and write it as one .zip bundle.",
        "The archive is reproducible (sorted members, fixed timestamps) and has the same\n"
        "digest as the directory.\n\n"
        "example:\n  modelkit pack bundles/churn --output dist/churn-1.4.0.zip",
    )
    pack.add_argument("path", metavar="DIR", help="the bundle directory")
    pack.add_argument("--output", "-o", required=True, metavar="FILE.zip", help="the archive")
    pack.add_argument("--force", action="store_true", help="replace an existing archive")

    bench = command(
        "bench",
        _run_bench,
        "Measure latency and throughput on generated inputs, next to the raw runtime.",
        "Inputs are generated from the signature (around the reference profile when the\n"
        "bundle has one). 'raw' is the runtime alone (the estimator's predict_proba/predict,\n"
        "or onnxruntime's session.run) on arrays prepared beforehand: the floor modelkit's\n"
        "validation and decoding add to. Numbers depend on the machine and its load.\n\n"
        "example:\n  modelkit bench bundles/churn --quick",
    )
    bench.add_argument("path", metavar="PATH", help="the bundle to measure")
    bench.add_argument(
        "--quick", action="store_true", help="fewer calls: a smoke run of a few seconds"
    )
    bench.add_argument(
        "--records",
        type=_positive_int,
        metavar="N",
        help="single-record calls to time (default 2,000; 200 with --quick)",
    )
    bench.add_argument(
        "--batch-size", type=_positive_int, default=1000, metavar="N", help="default 1,000"
    )
    _add_version_policy(bench)

    serve = command(
        "serve",
        _run_serve,
        "Serve bundles over HTTP: the Flask endpoints on waitress, with health checks.",
        "PATH is one bundle (served under its manifest name) or a registry config (.toml).\n"
        "Needs the 'serve' extra (Flask and waitress). Endpoints: GET /healthz (the process\n"
        "is up), GET /readyz (200 once the models are loaded, 503 before), and under the\n"
        "prefix (default /models): GET /models, GET /models/<name>,\n"
        "POST /models/<name>/predict. SIGTERM or Ctrl-C stops it after the requests in\n"
        "flight.\n\n"
        "examples:\n"
        "  modelkit serve bundles/churn --port 8000\n"
        "  modelkit serve models.toml --lock models.lock --host 0.0.0.0",
    )
    serve.add_argument("path", metavar="PATH|CONFIG", help="a bundle, or a registry config")
    serve.add_argument("--lock", metavar="FILE", help="a lock file the config's bundles must match")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on (8000)")
    serve.add_argument("--threads", type=_positive_int, default=4, help="worker threads (4)")
    serve.add_argument(
        "--url-prefix", default="/models", metavar="PREFIX", help="the endpoints' prefix (/models)"
    )
    serve.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="most records (or tensor rows) per predict request (1,000)",
    )
    serve.add_argument(
        "--max-body-size",
        type=_byte_size,
        default=10 * 2**20,
        metavar="BYTES",
        help="largest request body, refused before it is read (10MiB; takes KiB, MiB, GiB)",
    )
    serve.add_argument(
        "--max-response-size",
        type=_byte_size,
        default=50 * 2**20,
        metavar="BYTES",
        help="largest predict answer, refused before it is built (50MiB)",
    )
    return parser


_BYTE_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _byte_size(text: str) -> int:
    """A positive number of bytes: ``1048576``, ``512KiB``, ``10MiB``, ``1GiB``."""
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    unit = _BYTE_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive size in bytes (such as 1048576, 512KiB or 10MiB), got {text!r}"
        )
    return int(match.group(1)) * unit


def _add_version_policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version-policy",
        choices=("warn", "error", "ignore"),
        default="warn",
        help="when the bundle was saved with other library versions (default: warn)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


# -- shared helpers -----------------------------------------------------------------------------


def _out() -> IO[str]:
    return sys.stdout


def _err() -> IO[str]:
    return sys.stderr


@dataclass(frozen=True)
class _Described:
    """A bundle's manifest and digest, read without deserializing anything."""

    label: str
    manifest: Manifest
    digest: str


def _describe_bundle(path: str) -> _Described:
    """Verify ``path`` and return its manifest: a bundle's own, or a bare ``.onnx`` file's.

    A bare pickle is refused, as :func:`modelkit.load` refuses it.
    """
    from ._bundle import open_bundle

    # Verified as loading verifies, but an artifact's bytes are hashed and let go, not kept.
    opened = open_bundle(path, read=False)
    if opened.bundle is not None:
        return _Described(path, opened.bundle.manifest, opened.bundle.digest)
    if opened.kind == "onnx":
        from ._api import describe_bare_onnx

        opened = open_bundle(path)
        assert opened.data is not None
        # Read from the file, never run: no session, so no graph optimization either.
        manifest = describe_bare_onnx(opened.label, opened.data, opened.digest)
        return _Described(path, manifest, opened.digest)
    from ._api import load

    model = load(path)  # a bare pickle: refused, as load refuses it
    assert model.manifest is not None
    assert model.digest is not None
    return _Described(path, model.manifest, model.digest)


class _AtomicFile:
    """A file written under a temporary name beside ``target`` and renamed onto it on
    :meth:`commit`: a failed or interrupted run never leaves a file that looks complete."""

    def __init__(self, target: Path, *, binary: bool = False) -> None:
        if not target.parent.is_dir():
            raise ModelkitError(f"Cannot write {str(target)!r}: its directory does not exist.")
        self.target = target
        self.temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
        mode = "xb" if binary else "x"
        encoding = None if binary else "utf-8"
        newline = None if binary else ""
        self.handle: IO[Any] = open(self.temporary, mode, encoding=encoding, newline=newline)  # noqa: SIM115 - closed by commit or discard

    def commit(self) -> None:
        self.handle.close()
        os.replace(self.temporary, self.target)

    def discard(self) -> None:
        self.handle.close()
        self.temporary.unlink(missing_ok=True)


def _write_text(path: str | None, text: str) -> None:
    """``text`` to ``path`` (written atomically), or to stdout when ``path`` is None."""
    if path is None:
        _out().write(text)
        return
    file = _AtomicFile(Path(path))
    try:
        file.handle.write(text)
    except BaseException:
        file.discard()
        raise
    file.commit()


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: int = 2) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append(" " * indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


# -- inspect ------------------------------------------------------------------------------------


def _run_inspect(args: argparse.Namespace) -> int:
    described = _describe_bundle(args.path)
    report = _inspection(described)
    if args.json:
        _out().write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        _out().write(_inspection_text(described.manifest, report))
    return EXIT_OK


def _inspection(described: _Described) -> dict[str, Any]:
    manifest = described.manifest
    signature = manifest.signature
    return {
        "path": described.label,
        "name": manifest.name,
        "version": manifest.version,
        "format": manifest.format,
        "task": manifest.task,
        "digest": described.digest,
        "format_version": manifest.format_version,
        "created_at": manifest.created_at.isoformat(),
        "signature": signature.model_dump(mode="json"),
        "artifacts": [artifact.model_dump(mode="json") for artifact in manifest.artifacts],
        "size": sum(artifact.size for artifact in manifest.artifacts),
        "environment": _environment_report(manifest),
        "metadata": manifest.metadata,
        "has_profile": manifest.profile is not None,
    }


def _environment_report(manifest: Manifest) -> dict[str, Any]:
    """Each recorded package next to the installed one, with what loading would do about it."""
    from ._environment import _release, depends_on_python, installed_version

    packages = []
    for name, recorded in sorted(manifest.environment.packages.items()):
        installed = installed_version(name)
        if installed is None:
            status = "missing"
        elif installed == recorded:
            status = "ok"
        elif _release(installed)[:1] == _release(recorded)[:1]:
            status = "differs"
        else:
            status = "incompatible"
        packages.append(
            {"name": name, "recorded": recorded, "installed": installed, "status": status}
        )
    python_now = platform.python_version()
    recorded_python = manifest.environment.python
    if not depends_on_python(manifest.format):
        python_status = "not compared"
    elif _release(python_now)[:2] == _release(recorded_python)[:2]:
        python_status = "ok"
    else:
        python_status = "differs"
    statuses = {entry["status"] for entry in packages} | {python_status}
    if statuses & {"missing", "incompatible"}:
        verdict = "load refuses it (unless version_policy='ignore')"
    elif "differs" in statuses:
        verdict = "load warns (results may differ slightly)"
    else:
        verdict = "matches this environment"
    return {
        "python": {"recorded": recorded_python, "installed": python_now, "status": python_status},
        "packages": packages,
        "verdict": verdict,
    }


def _inspection_text(manifest: Manifest, report: Mapping[str, Any]) -> str:
    created = manifest.created_at.isoformat()
    size = _size(report["size"])
    count = len(manifest.artifacts)
    fields = [
        ("path", report["path"]),
        ("format", f"{manifest.format} (bundle format {manifest.format_version})"),
        ("task", manifest.task),
        ("digest", report["digest"]),
        ("created", created),
        ("size", f"{size} in {count} artifact{'s' if count != 1 else ''}"),
    ]
    width = max(len(name) for name, _ in fields)
    parts = [f"{manifest.name} {manifest.version}"]
    parts += [f"  {name.ljust(width)}  {value}" for name, value in fields]

    signature = manifest.signature
    parts += ["", "Signature", f"  {signature}"]
    if signature.columns:
        rows = [
            [
                column.name,
                column.type,
                "yes" if column.nullable else "no",
                "-" if column.categories is None else _short(list(column.categories)),
            ]
            for column in signature.columns
        ]
        parts += ["", "Inputs", _table(["name", "type", "nullable", "categories"], rows)]
    elif signature.tensors:
        rows = [[t.name, t.dtype, _shape(t.shape)] for t in signature.tensors]
        parts += ["", "Inputs", _table(["name", "dtype", "shape"], rows)]
    outputs = signature.outputs
    if outputs.task == "classification":
        classes = "?" if outputs.classes is None else _short(list(outputs.classes))
        probabilities = "with" if outputs.has_probabilities else "without"
        parts += ["", "Outputs", f"  label of {classes}, {probabilities} probabilities"]
    elif outputs.task == "regression":
        parts += ["", "Outputs", "  value"]
    elif outputs.tensors:
        rows = [[t.name, t.dtype, _shape(t.shape)] for t in outputs.tensors]
        parts += ["", "Outputs", _table(["name", "dtype", "shape"], rows)]

    rows = [[a.path, _size(a.size), a.sha256] for a in manifest.artifacts]
    parts += ["", "Artifacts", _table(["path", "size", "sha256"], rows)]

    environment = report["environment"]
    python = environment["python"]
    rows = [["python", python["recorded"], python["installed"], python["status"]]]
    rows += [
        [p["name"], p["recorded"], p["installed"] or "-", p["status"]]
        for p in environment["packages"]
    ]
    parts += [
        "",
        f"Environment: {environment['verdict']}",
        _table(["package", "recorded", "installed", "status"], rows),
    ]
    if manifest.metadata:
        rows = [[key, _short(value)] for key, value in manifest.metadata.items()]
        parts += ["", "Metadata", _table(["key", "value"], rows)]
    return "\n".join(parts) + "\n"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


# -- verify -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LockEntry:
    key: str  # "churn", "churn.canary"
    path: str  # as written in the lock file
    location: Path  # resolved against the lock file's directory
    sha256: str


def _lock_entries(lock_path: Path) -> list[_LockEntry]:
    from ._bundle import normalize_digest
    from ._registry import _read_lock

    lock = _read_lock(lock_path)
    entries = []
    for name, model in lock.models.items():
        for key, bundle in (
            (name, model),
            (f"{name}.canary", model.canary),
            (f"{name}.shadow", model.shadow),
        ):
            if bundle is None:
                continue
            try:
                pinned = normalize_digest(bundle.sha256)
            except ValueError as exc:
                raise ValueError(
                    f"lock file {str(lock_path)!r}: models.{key}.sha256: {exc}"
                ) from None
            location = Path(bundle.path).expanduser()
            if not location.is_absolute():
                location = lock_path.parent / location
            entries.append(_LockEntry(key, bundle.path, location, pinned))
    return entries


def _run_verify(args: argparse.Namespace) -> int:
    if not args.paths and args.lock is None:
        raise _UsageError("give the bundles to verify (PATH...), or --lock FILE")
    lock_path = None if args.lock is None else Path(args.lock)
    entries = [] if lock_path is None else _lock_entries(lock_path)
    checks: list[tuple[str, Path, _LockEntry | None]]
    if args.paths:
        checks = [(path, Path(path), None) for path in args.paths]
    else:
        checks = [(entry.path, entry.location, entry) for entry in entries]
    failed = 0
    for label, path, entry in checks:
        try:
            reason, found = _verify_one(
                path, entry, entries, lock_path, given=entry is None, max_size=args.max_size
            )
        except Exception as exc:  # noqa: BLE001 - one bundle's surprise must not hide the others
            if args.debug:
                traceback.print_exc(file=sys.stderr)
            reason, found = _error_message(exc, debug=args.debug), ""
        if reason is None:
            print(f"OK {label} {found}", file=_out())
        else:
            failed += 1
            print(f"FAILED {label}: {reason}", file=_out())
    if failed:
        print(
            f"{PROG}: error: {failed} of {len(checks)} bundle{'s' if len(checks) != 1 else ''} "
            "failed verification",
            file=_err(),
        )
        return EXIT_FAILURE
    return EXIT_OK


def _verify_one(
    path: Path,
    entry: _LockEntry | None,
    entries: Sequence[_LockEntry],
    lock_path: Path | None,
    *,
    given: bool,
    max_size: int,
) -> tuple[str | None, str]:
    """Check one bundle; return (the reason it failed or None, its digest)."""
    from ._bundle import open_bundle

    try:
        # Verifies every file, hashing each in chunks; keeps and deserializes nothing.
        opened = open_bundle(path, max_bundle_size=max_size, read=False)
    except ModelkitError as exc:
        return str(exc), ""
    found = opened.digest
    name = None if opened.bundle is None else opened.bundle.manifest.name
    if lock_path is None:
        return None, found
    if given:
        entry = _entry_for(path, name, entries)
        if entry is None:
            return (
                f"no entry of the lock file {str(lock_path)!r} has this path"
                + ("" if name is None else f" or the name {name!r}"),
                found,
            )
    assert entry is not None
    if found != entry.sha256:
        reason = (
            f"its digest is {found}, but the lock file {str(lock_path)!r} pins "
            f"{entry.sha256} for models.{entry.key}. It is a different bundle: re-lock it "
            "after checking where it came from."
        )
        return reason, found
    return None, found


def _entry_for(path: Path, name: str | None, entries: Sequence[_LockEntry]) -> _LockEntry | None:
    """The lock entry with this bundle's path, or else the primary entry of its name."""
    resolved = path.resolve()
    for entry in entries:
        if entry.location.resolve() == resolved:
            return entry
    for entry in entries:
        if name is not None and entry.key == name:
            return entry
    return None


# -- lock ---------------------------------------------------------------------------------------


def _run_lock(args: argparse.Namespace) -> int:
    from ._registry import LOCK_VERSION, format_lock

    if args.config is not None and args.paths:
        raise _UsageError("give bundles (PATH...) or --config FILE, not both")
    if args.config is None and not args.paths:
        raise _UsageError("give the bundles to lock (PATH...), or --config FILE")
    output = None if args.output is None else Path(args.output)
    if args.config is not None:
        config = Path(args.config)
        base = output.parent if output is not None else config.parent
        models = _lock_config(config, base)
    else:
        models = _lock_paths(args.paths, output.parent if output is not None else Path.cwd())
    text = format_lock({"lock_version": LOCK_VERSION, "models": models})
    _write_text(args.output, text)
    if output is not None:
        count = sum(1 + ("canary" in m) + ("shadow" in m) for m in models.values())
        print(f"Locked {count} bundle{'s' if count != 1 else ''} in {output}", file=_err())
    return EXIT_OK


def _digest_and_name(path: Path) -> tuple[str, str]:
    from ._bundle import open_bundle

    opened = open_bundle(path, read=False)
    if opened.bundle is None:
        raise BundleError(
            f"{str(path)!r} is a bare model file, not a bundle; lock files pin bundles. Save it "
            "with modelkit.save() first.",
            path=str(path),
        )
    return opened.bundle.digest, opened.bundle.manifest.name


def _lock_paths(paths: Sequence[str], base: Path) -> dict[str, Any]:
    models: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for path in paths:
        found, name = _digest_and_name(Path(path))
        if name in models:
            raise ValueError(
                f"{origins[name]!r} and {path!r} are both named {name!r}; a lock file keys "
                "bundles by name. Lock a registry config (--config) to pin a canary or shadow."
            )
        origins[name] = path
        models[name] = {"path": _relative_path(Path(path), base), "sha256": found}
    return models


def _lock_config(config: Path, base: Path) -> dict[str, Any]:
    from ._bundle import normalize_digest
    from ._registry import _Config, _expand_shorthand, _read_toml, _validated

    document = _read_toml(config, "registry config")
    parsed: _Config = _validated(
        _Config, _expand_shorthand(document), f"registry config {str(config)!r}"
    )
    models: dict[str, Any] = {}
    for name, entry in parsed.models.items():
        locked: dict[str, Any] = {}
        for variant, table in (
            ("primary", entry),
            ("canary", entry.canary),
            ("shadow", entry.shadow),
        ):
            if table is None:
                continue
            key = name if variant == "primary" else f"{name}.{variant}"
            written = Path(table.path).expanduser()
            location = written if written.is_absolute() else config.parent / written
            try:
                found, _ = _digest_and_name(location)
            except BundleError as exc:
                raise type(exc)(f"models.{key}: {exc}", path=exc.path) from exc
            if table.sha256 is not None and normalize_digest(table.sha256) != found:
                raise IntegrityError(
                    f"models.{key}: {table.path!r} has digest {found}, but the config pins "
                    f"{normalize_digest(table.sha256)}.",
                    path=table.path,
                    expected=normalize_digest(table.sha256),
                    actual=found,
                )
            bundle = {
                "path": table.path if written.is_absolute() else _relative_path(location, base),
                "sha256": found,
            }
            if variant == "primary":
                locked.update(bundle)
            else:
                locked[variant] = bundle
        models[name] = locked
    return models


def _relative_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (POSIX separators), or absolute when it cannot be."""
    # abspath, not resolve: a bundle path may be a symbolic link on purpose (current -> 1.4.0).
    try:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix()
    except ValueError:  # another drive on Windows
        return os.path.abspath(path)


# -- schema -------------------------------------------------------------------------------------


def _run_schema(args: argparse.Namespace) -> int:
    signature = _describe_bundle(args.path).manifest.signature
    document: dict[str, Any] = {
        "input": signature.input_json_schema(),
        "output": signature.output_json_schema(),
    }
    if args.part is not None:
        document = document[args.part]
    _write_text(args.output, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK


# -- predict ------------------------------------------------------------------------------------

DEFAULT_CHUNK_SIZE = 10_000
_FORMAT_NAMES = ("jsonl", "csv", "parquet")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _format_of(path: str, flag: str | None, option: str) -> str:
    if flag is not None:
        return flag
    suffix = Path(path).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        raise _UsageError(
            f"cannot tell the format of {path!r} from its extension ({', '.join(_EXTENSIONS)}); "
            f"pass {option} {{{','.join(_FORMAT_NAMES)}}}"
        ) from None


class _BadRowError(Exception):
    """A row that cannot be scored: which field (if one), and why."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Reject:
    line: int
    field: str | None
    error: str
    content: Any


@dataclass
class _Chunk:
    """Rows read from the input, ready for the model, and those set aside on the way."""

    lines: list[int] = field(default_factory=list)  # each row's line (or row) number
    # What the output carries of each row: a sequence in the order of the reader's columns,
    # or (JSON lines, whose records may differ) the record itself.
    rows: list[Any] = field(default_factory=list)
    records: list[tuple[Any, ...]] = field(default_factory=list)  # signature order
    contents: list[Any] = field(default_factory=list)  # each row as read (for rejects)
    rejects: list[_Reject] = field(default_factory=list)

    def subset(self, keep: Sequence[int]) -> _Chunk:
        return _Chunk(
            [self.lines[i] for i in keep],
            [self.rows[i] for i in keep],
            [self.records[i] for i in keep],
            [self.contents[i] for i in keep],
            self.rejects,
        )


class _Reader:
    """Reads one input file in chunks.

    Attributes:
        unit: what a position counts, ``line`` (text files) or ``row`` (Parquet).
        columns: the input columns the output carries, when the file declares them (a header
            or a schema): each row is then a sequence in this order. ``None`` for JSON lines,
            whose rows are the records themselves (for a CSV or Parquet output, the first
            record's keys are the columns).
        arrow_types: the type of each input column, for a Parquet output: a signature column
            type (``"number"``...), an Arrow type, or absent to infer it from the values.
        total: the size of the input, in the units of :meth:`done`, for the progress bar.
    """

    unit = "line"
    columns: list[str] | None = None
    arrow_types: dict[str, Any]
    total = 0

    def done(self) -> int:
        """How much of ``total`` has been read."""
        raise NotImplementedError

    def content(self, raw: Any) -> Any:
        """What the rejects file shows of a row, from what :meth:`chunks` kept of it."""
        return raw

    def chunks(self, size: int) -> Iterator[_Chunk]:
        """The file's rows, ``size`` at a time (bad rows among them as rejects)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _record_getter(names: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    from ._signature import _tuple_getter

    return _tuple_getter(names)


def _missing_field(names: Sequence[str], row: Mapping[str, Any]) -> _BadRowError:
    missing = [name for name in names if name not in row]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return _BadRowError(missing[0], f"field {missing[0]!r} is missing{more}")


class _TextReader(_Reader):
    """A UTF-8 text file read line by line; progress is the position in its bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total = path.stat().st_size
        self.binary = open(path, "rb")  # noqa: SIM115 - closed with self.file, by close()
        # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the header.
        self.file = io.TextIOWrapper(self.binary, encoding="utf-8-sig", newline="")

    def done(self) -> int:
        return self.binary.tell()

    def close(self) -> None:
        self.file.close()


class _JsonLinesReader(_TextReader):
    def __init__(self, path: Path, inputs: TabularInputs, *, keep_rows: bool) -> None:
        super().__init__(path)
        self.names = [c.name for c in inputs.columns]
        self.keep_rows = keep_rows
        self.columns = None if keep_rows else []
        self.arrow_types = {c.name: c.type for c in inputs.columns}

    def content(self, raw: Any) -> Any:
        return str(raw).rstrip("\r\n")

    def chunks(self, size: int) -> Iterator[_Chunk]:
        getter = _record_getter(self.names)
        keep_rows = self.keep_rows
        loads = json.loads
        chunk = _Chunk()
        count = 0
        for number, text in enumerate(self.file, 1):
            try:
                row = loads(text)
                values = getter(row)  # a row that is not an object fails here too
            except (ValueError, KeyError, TypeError, IndexError, RecursionError):
                if text.isspace():
                    continue  # a blank line
                problem = self._problem(text)
                chunk.rejects.append(
                    _Reject(number, problem.field, problem.message, self.content(text))
                )
            else:
                chunk.lines.append(number)
                chunk.rows.append(row if keep_rows else ())
                chunk.records.append(values)
                chunk.contents.append(text)
            count += 1
            if count >= size:
                yield chunk
                chunk, count = _Chunk(), 0
        if count:
            yield chunk

    def _problem(self, text: str) -> _BadRowError:
        try:
            row = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return _BadRowError(None, f"not valid JSON: {exc}")
        if not isinstance(row, dict):
            return _BadRowError(None, f"expected a JSON object, got {_json_type(row)}")
        return _missing_field(self.names, row)


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


class _CsvReader(_TextReader):
    def __init__(self, path: Path, inputs: TabularInputs, *, keep_rows: bool) -> None:
        import csv

        super().__init__(path)
        try:
            self._read_header(inputs)
        except BaseException:
            self.file.close()
            raise
        self.spec = inputs.columns
        self.names = [c.name for c in inputs.columns]
        self.keep_rows = keep_rows
        self.columns = list(self.header) if keep_rows else []
        self.arrow_types = dict.fromkeys(self.header, "string")
        self.arrow_types.update((c.name, c.type) for c in inputs.columns)
        self.dialect = csv.excel

    def _read_header(self, inputs: TabularInputs) -> None:
        import csv

        self.reader = csv.reader(self.file)
        self.header: list[str] = next((fields for fields in self.reader if fields), [])
        where = f"{self.path}: line {self.reader.line_num}"
        names = [c.name for c in inputs.columns]
        if not self.header:
            raise InvalidInputError(f"{self.path}: the file is empty; expected a header line.")
        duplicates = sorted({name for name in self.header if self.header.count(name) > 1})
        if duplicates:
            raise InvalidInputError(
                f"{where}: the header names {duplicates[0]!r} twice.", field=duplicates[0]
            )
        missing = [name for name in names if name not in self.header]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InvalidInputError(
                f"{where}: the header has no column {missing[0]!r}{more}; the model's inputs "
                f"are {names}.",
                field=missing[0],
            )

    def content(self, raw: Any) -> Any:
        import csv

        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(raw)
        return buffer.getvalue()

    def chunks(self, size: int) -> Iterator[_Chunk]:
        header = self.header
        width = len(header)
        plan = [(header.index(c.name), _cell_reader(c)) for c in self.spec]
        positions = [position for position, _ in plan]
        keep_rows = self.keep_rows
        reader = self.reader
        chunk = _Chunk()
        count = 0
        last = reader.line_num
        for fields in reader:
            number, last = last + 1, reader.line_num  # a quoted field may span lines
            try:
                values = (
                    tuple([read(fields[position]) for position, read in plan])
                    if len(fields) == width
                    else None
                )
            except (ValueError, OverflowError):
                values = None
            if values is None:
                if not fields:
                    continue  # a blank line
                problem = self._problem(fields)
                chunk.rejects.append(
                    _Reject(number, problem.field, problem.message, self.content(fields))
                )
            else:
                row: Any = ()
                if keep_rows:
                    row = list(fields)
                    for position, value in zip(positions, values, strict=True):
                        row[position] = value  # as the model reads it
                chunk.lines.append(number)
                chunk.rows.append(row)
                chunk.records.append(values)
                chunk.contents.append(fields)
            count += 1
            if count >= size:
                yield chunk
                chunk, count = _Chunk(), 0
        if count:
            yield chunk

    def _problem(self, fields: list[str]) -> _BadRowError:
        if len(fields) != len(self.header):
            return _BadRowError(None, f"expected {len(self.header)} fields, got {len(fields)}")
        for column in self.spec:
            cell = fields[self.header.index(column.name)]
            try:
                _cell_reader(column)(cell)
            except (ValueError, OverflowError):
                return _BadRowError(
                    column.name, f"field {column.name!r} {_cell_problem(column, cell)}"
                )
        return _BadRowError(None, "cannot be read")  # pragma: no cover - some cell failed


_EXPECTED = {
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "datetime": "a date and time",
}


def _cell_problem(column: ColumnSpec, cell: str) -> str:
    if not cell.strip():
        return "is empty, and this column takes no missing values"
    return f"expected {_EXPECTED.get(column.type, 'a string')}, got {cell!r}"


def _cell_reader(column: ColumnSpec) -> Callable[[str], Any]:
    """Read one CSV cell as the column's type (raising ValueError if it is not one); an empty
    cell is a missing value in a nullable column, and an empty string in a string column."""
    nullable = column.nullable
    kind = column.type
    if kind == "number" and not nullable:
        return float  # the common case, at C speed
    if kind in ("string", "datetime"):  # datetimes are parsed, ISO 8601, by validation
        return (lambda cell: cell or None) if nullable else str

    def number(cell: str) -> Any:
        try:
            return float(cell)
        except ValueError:
            if cell.strip():
                raise
            return None

    def integer(cell: str) -> Any:
        with contextlib.suppress(ValueError):
            return int(cell)
        if nullable and not cell.strip():
            return None
        value = float(cell)
        if not value.is_integer():
            raise ValueError(cell)
        return int(value)

    def boolean(cell: str) -> Any:
        text = cell.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if nullable and not text:
            return None
        raise ValueError(cell)

    return {"number": number, "integer": integer, "boolean": boolean}[kind]


class _ParquetReader(_Reader):
    unit = "row"

    def __init__(self, path: Path, inputs: TabularInputs, *, keep_rows: bool) -> None:
        from ._deps import require

        parquet = require("pyarrow.parquet", extra="parquet", feature="Reading Parquet files")
        self.path = path
        self.names = [c.name for c in inputs.columns]
        self.keep_rows = keep_rows
        self.file = parquet.ParquetFile(path)
        schema = self.file.schema_arrow
        missing = [name for name in self.names if name not in schema.names]
        if missing:
            self.file.close()
            raise InvalidInputError(
                f"{path}: the file has no column {missing[0]!r}; the model's inputs are "
                f"{self.names}.",
                field=missing[0],
            )
        self.columns = list(schema.names) if keep_rows else []
        self.arrow_types = {f.name: f.type for f in schema}
        self.total = self.file.metadata.num_rows
        self._done = 0

    def done(self) -> int:
        return self._done

    def content(self, raw: Any) -> Any:
        return dict(zip(self.file.schema_arrow.names, raw, strict=True))

    def chunks(self, size: int) -> Iterator[_Chunk]:
        names = self.file.schema_arrow.names
        positions = [names.index(name) for name in self.names]
        keep_rows = self.keep_rows
        for batch in self.file.iter_batches(batch_size=size):
            columns = [column.to_pylist() for column in batch.columns]
            rows = list(zip(*columns, strict=True))
            length = len(rows)
            chunk = _Chunk(
                lines=list(range(self._done + 1, self._done + length + 1)),
                rows=rows if keep_rows else [()] * length,
                records=list(zip(*[columns[p] for p in positions], strict=True)),
                contents=rows,
            )
            self._done += length
            yield chunk

    def close(self) -> None:
        self.file.close()


_READERS: dict[str, Callable[..., _Reader]] = {
    "jsonl": _JsonLinesReader,
    "csv": _CsvReader,
    "parquet": _ParquetReader,
}


class _Writer:
    """Writes scored rows to one output file (under a temporary name until committed).

    Args:
        file: where to write.
        reader: the input's reader, which says how its rows are laid out.
        prediction_names: the prediction columns, for the header of an output without rows.
    """

    def __init__(self, file: _AtomicFile, reader: _Reader, prediction_names: list[str]) -> None:
        self.file = file
        self.reader = reader
        self.prediction_names = prediction_names
        self.columns: list[str] | None = None  # the input columns written, once known

    def write(self, rows: list[Any], predictions: dict[str, list[Any]]) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self.file.commit()

    def discard(self) -> None:
        self.file.discard()

    def _start(self, rows: list[Any], predictions: Mapping[str, Any]) -> list[str]:
        """Fix the input columns on the first rows, refusing names the predictions take."""
        if self.columns is None:
            columns = self.reader.columns
            if columns is None:  # JSON lines: the first record's keys
                columns = list(rows[0]) if rows else []
            clash = [name for name in columns if name in predictions]
            if clash:
                raise _collision(clash[0])
            self.columns = columns
        return self.columns

    def _sequences(self, rows: list[Any]) -> list[Any]:
        """The rows as sequences in the order of :attr:`columns`."""
        if self.reader.columns is not None:
            return rows
        columns = self.columns or []
        return [[row.get(name) for name in columns] for row in rows]


def _collision(name: str) -> ValueError:
    return ValueError(
        f"The input has a column {name!r}, which the predictions would overwrite; rename it, "
        "or pass --predictions-only."
    )


class _JsonLinesWriter(_Writer):
    def write(self, rows: list[Any], predictions: dict[str, list[Any]]) -> None:
        names = list(predictions)
        dumps = json.JSONEncoder(ensure_ascii=False, default=str).encode
        fixed = self.reader.columns
        if fixed is not None:
            self._start(rows, predictions)  # refuses a column the predictions would replace
        lines = []
        for row, *values in zip(rows, *predictions.values(), strict=True):
            if fixed is None:  # a record of its own: it keeps every key it has
                if not predictions.keys().isdisjoint(row):
                    raise _collision(next(name for name in row if name in predictions))
                record = row
            else:
                record = dict(zip(fixed, row, strict=True))
            record.update(zip(names, values, strict=True))
            lines.append(dumps(record))
        if lines:
            self.file.handle.write("\n".join(lines) + "\n")


class _CsvWriter(_Writer):
    def __init__(self, file: _AtomicFile, reader: _Reader, prediction_names: list[str]) -> None:
        import csv

        super().__init__(file, reader, prediction_names)
        self.writer = csv.writer(file.handle, lineterminator="\n")

    def write(self, rows: list[Any], predictions: dict[str, list[Any]]) -> None:
        if self.columns is None:
            self.writer.writerow([*self._start(rows, predictions), *predictions])
        self.writer.writerows(
            [*values, *outputs]
            for values, *outputs in zip(self._sequences(rows), *predictions.values(), strict=True)
        )

    def commit(self) -> None:
        if self.columns is None:  # no rows at all: the header alone
            self.writer.writerow([*(self.reader.columns or []), *self.prediction_names])
        super().commit()


class _ParquetWriter(_Writer):
    _TYPES: ClassVar[dict[str, str]] = {
        "number": "float64",
        "integer": "int64",
        "boolean": "bool_",
        "datetime": "string",  # written back as read: ISO 8601 text
        "string": "string",
    }

    def __init__(self, file: _AtomicFile, reader: _Reader, prediction_names: list[str]) -> None:
        from ._deps import require

        super().__init__(file, reader, prediction_names)
        self.arrow = require("pyarrow", extra="parquet", feature="Writing Parquet files")
        self.parquet = require("pyarrow.parquet", extra="parquet", feature="Writing Parquet files")
        self.schema: Any = None
        self.writer: Any = None

    def _type(self, name: str, values: list[Any]) -> Any:
        known = self.reader.arrow_types.get(name)
        if isinstance(known, str):
            return getattr(self.arrow, self._TYPES[known])()
        if known is not None:
            return known
        inferred = self.arrow.array(values).type
        return self.arrow.string() if self.arrow.types.is_null(inferred) else inferred

    def _open(self, fields: list[tuple[str, Any]]) -> None:
        self.schema = self.arrow.schema(fields)
        self.writer = self.parquet.ParquetWriter(self.file.handle, self.schema)

    def write(self, rows: list[Any], predictions: dict[str, list[Any]]) -> None:
        arrow = self.arrow
        first = self.schema is None
        columns = self._start(rows, predictions)
        sequences = self._sequences(rows)
        data: dict[str, list[Any]] = {
            name: [row[j] for row in sequences] for j, name in enumerate(columns)
        }
        data.update(predictions)
        if first:
            self._open([(name, self._type(name, values)) for name, values in data.items()])
        arrays = []
        for schema_field in self.schema:
            try:
                arrays.append(arrow.array(data[schema_field.name], type=schema_field.type))
            except (arrow.ArrowInvalid, arrow.ArrowTypeError, TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"Column {schema_field.name!r} cannot be written as {schema_field.type} (the "
                    f"type of its first values): {exc}",
                    field=schema_field.name,
                ) from None
        self.writer.write_table(arrow.Table.from_arrays(arrays, schema=self.schema))

    def commit(self) -> None:
        if self.writer is None:  # no rows at all: still a valid file, with the columns
            fields = [(name, self._type(name, [])) for name in self.reader.columns or []]
            fields += [(name, self.arrow.float64()) for name in self.prediction_names]
            self._open(fields)
        self.writer.close()
        super().commit()

    def discard(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        super().discard()


_WRITERS: dict[str, Callable[..., _Writer]] = {
    "jsonl": _JsonLinesWriter,
    "csv": _CsvWriter,
    "parquet": _ParquetWriter,
}


class _Progress:
    """A one-line progress bar on stderr, redrawn at most five times a second."""

    def __init__(self, reader: _Reader, *, enabled: bool) -> None:
        self.reader = reader
        self.enabled = enabled
        self.started = time.perf_counter()
        self.shown = 0.0

    def update(self, scored: int, *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.shown < 0.2:
            return
        self.shown = now
        elapsed = max(now - self.started, 1e-9)
        total = self.reader.total
        fraction = 1.0 if final else (min(self.reader.done() / total, 1.0) if total else 0.0)
        filled = int(fraction * 30)
        bar = "#" * filled + "." * (30 - filled)
        line = f"\r[{bar}] {fraction:4.0%}  {scored:,} rows  {scored / elapsed:,.0f} rows/s"
        _err().write(line + ("\n" if final else ""))
        _err().flush()


def _run_predict(args: argparse.Namespace) -> int:
    from ._api import load
    from ._signature import TabularInputs, TabularValidator

    source, target = Path(args.input), Path(args.output)
    input_format = _format_of(args.input, args.input_format, "--input-format")
    output_format = _format_of(args.output, args.output_format, "--output-format")
    paths = [source, target] + ([] if args.rejects is None else [Path(args.rejects)])
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise _UsageError("--input, --output and --rejects must be different files")
    if not source.is_file():
        raise ModelkitError(f"The input file {args.input!r} does not exist.")

    model = load(args.path, version_policy=args.version_policy)
    signature = model.signature
    inputs = signature.inputs
    if not isinstance(inputs, TabularInputs) or signature.outputs.task not in (
        "classification",
        "regression",
    ):
        raise ModelkitError(
            f"modelkit predict scores tabular classifiers and regressors; {args.path!r} is a "
            f"{signature.kind} model with task {signature.outputs.task!r}. Call predict_batch "
            "from Python instead."
        )
    validator = TabularValidator(inputs)
    keep_rows = not args.predictions_only
    reader = _READERS[input_format](source, inputs, keep_rows=keep_rows)
    progress = _Progress(reader, enabled=not args.quiet and _err().isatty())
    started = time.perf_counter()
    scored = rejected = 0
    writer: _Writer | None = None
    rejects: _AtomicFile | None = None
    try:
        writer = _WRITERS[output_format](
            _AtomicFile(target, binary=output_format == "parquet"),
            reader,
            _prediction_names(signature.outputs),
        )
        if args.rejects is not None:
            rejects = _AtomicFile(Path(args.rejects))
        for chunk in reader.chunks(args.chunk_size):
            good, predictions = _score(model, validator, chunk, reader.content)
            for reject in sorted(good.rejects, key=lambda r: r.line):
                if rejects is None:
                    raise InvalidInputError(
                        f"{args.input}: {reader.unit} {reject.line}: {reject.error}. Nothing was "
                        "written; pass --rejects FILE to set bad rows aside and score the rest.",
                        field=reject.field,
                    )
                rejects.handle.write(
                    json.dumps(
                        {
                            reader.unit: reject.line,
                            "field": reject.field,
                            "error": reject.error,
                            "content": reject.content,
                        },
                        ensure_ascii=False,
                        default=str,
                    )
                    + "\n"
                )
                rejected += 1
            if good.records:
                writer.write(good.rows, predictions)
                scored += len(good.records)
            progress.update(scored)
        writer.commit()
        if rejects is not None:
            rejects.commit()
    except BaseException:
        if writer is not None:
            writer.discard()
        if rejects is not None:
            rejects.discard()
        raise
    finally:
        reader.close()
    progress.update(scored, final=True)
    if not args.quiet:
        elapsed = time.perf_counter() - started
        summary = f"Scored {scored:,} rows of {args.input} into {args.output} in {elapsed:.1f} s"
        if args.rejects is not None:
            summary += f"; {rejected:,} rejected into {args.rejects}"
        print(summary + ".", file=_err())
    return EXIT_OK


def _score(
    model: Model[Any, Any], validator: Any, chunk: _Chunk, render: Callable[[Any], Any]
) -> tuple[_Chunk, dict[str, list[Any]]]:
    """Predict a chunk; rows the signature or the model refuses move to ``chunk.rejects``."""

    def run_alone(values: Any) -> None:
        model.predict_batch([values])

    # The whole chunk first. When some row is bad, set aside the rows the signature refuses,
    # then (one by one) the rows the runtime refuses although they fit it: an unknown category.
    for refuses in (validator.record, run_alone):
        if not chunk.records:
            return chunk, {}
        try:
            return chunk, _prediction_columns(model, model.predict_batch(chunk.records))
        except InvalidInputError:
            chunk = _set_aside(chunk, refuses, render)
    if not chunk.records:
        return chunk, {}
    return chunk, _prediction_columns(model, model.predict_batch(chunk.records))


def _set_aside(
    chunk: _Chunk, refuses: Callable[[Any], Any], render: Callable[[Any], Any]
) -> _Chunk:
    """The chunk without the rows ``refuses`` raises InvalidInputError for (kept as rejects)."""
    keep = []
    for index, values in enumerate(chunk.records):
        try:
            refuses(values)
        except InvalidInputError as exc:
            chunk.rejects.append(_rejected(chunk, index, exc, render))
        else:
            keep.append(index)
    return chunk.subset(keep)


def _rejected(
    chunk: _Chunk, index: int, exc: InvalidInputError, render: Callable[[Any], Any]
) -> _Reject:
    first = exc.errors[0] if exc.errors else {"field": exc.field, "message": str(exc)}
    message = str(first.get("message") or exc).rstrip(".")
    if len(exc.errors) > 1:
        more = len(exc.errors) - 1
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    where = first.get("field")
    return _Reject(
        chunk.lines[index],
        None if where is None else str(where),
        message,
        render(chunk.contents[index]),
    )


def _prediction_names(outputs: Outputs) -> list[str]:
    if outputs.task == "regression":
        return ["value"]
    names = ["label"]
    if outputs.has_probabilities:
        names += [f"probability_{cls}" for cls in outputs.classes or ()]
    return names


def _prediction_columns(model: Model[Any, Any], predictions: Any) -> dict[str, list[Any]]:
    """``label`` and ``probability_<class>`` (classifiers) or ``value`` columns, as lists."""
    columns: dict[str, list[Any]] = {}
    fields = predictions.fields
    if "label" in fields:
        columns["label"] = predictions["label"].tolist()
        if "probabilities" in fields:
            probabilities = predictions["probabilities"]
            for j, cls in enumerate(model.signature.outputs.classes or ()):
                columns[f"probability_{cls}"] = probabilities[:, j].tolist()
    else:
        values = predictions["value"]
        if values.ndim == 1:
            columns["value"] = values.tolist()
        else:
            for j in range(values.shape[1]):
                columns[f"value_{j}"] = values[:, j].tolist()
    return columns


# -- convert and pack ---------------------------------------------------------------------------


def _run_convert(args: argparse.Namespace) -> int:
    from ._api import convert

    target = Path(args.output)
    if (target.exists() or target.is_symlink()) and not args.force:
        raise BundleError(
            f"{args.output!r} already exists; pass --force to replace it.", path=args.output
        )
    manifest = convert(
        args.path,
        args.output,
        to=args.to,
        name=args.name,
        version=args.model_version,
        sha256=args.sha256,
        overwrite=args.force,
    )
    parity: Any = manifest.adapter.get("parity") or {}
    print(
        f"Converted {args.path} into {args.output} ({manifest.format}): "
        f"{manifest.name} {manifest.version}",
        file=_out(),
    )
    if isinstance(parity, dict):
        checked = ", ".join(
            f"{parity[key]:,} {key.removesuffix('_rows')}"
            for key in ("sample_rows", "generated_rows")
            if isinstance(parity.get(key), int)
        )
        details = []
        if "label_mismatches" in parity:
            details.append(f"{parity['label_mismatches']} label mismatches")
        if parity.get("max_probability_difference") is not None:
            details.append(
                f"largest probability difference {parity['max_probability_difference']:.2g}"
            )
        if parity.get("max_value_difference") is not None:
            details.append(f"largest value difference {parity['max_value_difference']:.2g}")
        print(
            f"Parity on {parity.get('rows', 0):,} rows ({checked}): {', '.join(details)}",
            file=_out(),
        )
    return EXIT_OK


def _run_pack(args: argparse.Namespace) -> int:
    from ._bundle import digest, open_bundle, write_zip

    source, target = Path(args.path), Path(args.output)
    if not source.is_dir():
        raise BundleError(
            f"{args.path!r} is not a bundle directory; pack zips a directory bundle.",
            path=args.path,
        )
    if target.suffix.lower() != ".zip":
        raise _UsageError(f"the archive's name must end in .zip, got {args.output!r}")
    if (target.exists() or target.is_symlink()) and not args.force:
        raise BundleError(
            f"{args.output!r} already exists; pass --force to replace it.", path=args.output
        )
    if not target.parent.is_dir():
        raise BundleError(f"The directory {str(target.parent)!r} does not exist.", path=args.output)
    opened = open_bundle(source)  # every file checked before it is packed
    assert opened.bundle is not None
    staging = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        write_zip(source, staging)
        packed = digest(staging)
        if packed != opened.bundle.digest:  # the directory changed while it was packed
            raise IntegrityError(
                f"The archive's digest {packed} differs from the directory's "
                f"{opened.bundle.digest}: the bundle changed while it was packed. Try again.",
                path=args.output,
                expected=opened.bundle.digest,
                actual=packed,
            )
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    print(
        f"Packed {args.path} into {args.output} ({_size(target.stat().st_size)}), digest {packed}",
        file=_out(),
    )
    return EXIT_OK


# -- bench --------------------------------------------------------------------------------------


@dataclass
class _Timing:
    single: list[float] | None = None  # seconds per call
    batch: list[float] | None = None  # seconds per batch


def _run_bench(args: argparse.Namespace) -> int:
    import numpy as np

    from ._api import load
    from ._convert import _generate
    from ._signature import TabularInputs

    model = load(args.path, version_policy=args.version_policy)
    manifest = model.manifest
    assert manifest is not None
    inputs = model.signature.inputs
    if not isinstance(inputs, TabularInputs):
        raise ModelkitError(
            f"modelkit bench generates tabular records; {args.path!r} has a "
            f"{model.signature.kind} signature."
        )
    calls = args.records or (200 if args.quick else 2000)
    rounds = 3 if args.quick else 15
    pool = max(min(calls, 256), 1)
    table = _generate(
        inputs, None, manifest.profile, max(pool, args.batch_size), np.random.default_rng(0)
    )
    if table is None:
        raise ModelkitError(
            f"Cannot generate inputs for {args.path!r}: a string column has no declared "
            "categories and the bundle has no reference profile to draw values from. Save it "
            "with sample_input= (a few hundred training rows)."
        )
    records = table.records()
    batch = records[: args.batch_size]

    ours = _Timing(
        single=_time_calls(model.predict, records[:pool], calls),
        batch=_time_calls(lambda _: model.predict_batch(batch), [None], rounds),
    )
    raw_name, raw = _raw_runtime(
        model, table, pool=pool, batch_size=args.batch_size, calls=calls, rounds=rounds
    )

    title = (
        f"{manifest.name} {manifest.version} ({manifest.format}, {manifest.task}): "
        f"{len(inputs.columns)} input columns, generated records"
    )
    rows: list[list[str]] = []

    def add(label: str, what: str, ours_value: str, raw_value: str, ratio: str) -> None:
        rows.append([label, what, ours_value, raw_value, ratio])

    for label, name, q in (("single record", "p50", 50), ("", "p90", 90), ("", "p99", 99)):
        mine = float(np.percentile(ours.single, q)) if ours.single else math.nan
        theirs = float(np.percentile(raw.single, q)) if raw.single else math.nan
        add(label, name, _duration(mine), _duration(theirs), _ratio(mine, theirs))
    mine_rate = len(ours.single or []) / sum(ours.single or [1.0])
    raw_rate = len(raw.single) / sum(raw.single) if raw.single else math.nan
    add("", "throughput", _rate(mine_rate), _rate(raw_rate), _ratio(raw_rate, mine_rate))
    mine_batch = float(np.median(ours.batch)) if ours.batch else math.nan
    raw_batch = float(np.median(raw.batch)) if raw.batch else math.nan
    add(
        f"batch of {len(batch):,}",
        "median",
        _duration(mine_batch),
        _duration(raw_batch),
        _ratio(mine_batch, raw_batch),
    )
    add(
        "",
        "throughput",
        _rate(len(batch) / mine_batch),
        _rate(len(batch) / raw_batch),
        _ratio(len(batch) / raw_batch, len(batch) / mine_batch),
    )
    text = _table(["", "", "modelkit", raw_name, "modelkit/raw"], rows, indent=0)
    note = (
        f"{calls:,} single-record calls, {rounds} batches; raw = {raw_name} alone on inputs "
        "prepared beforehand. Figures vary with the machine and its load."
    )
    _out().write(f"{title}\n\n{text}\n\n{note}\n")
    return EXIT_OK


def _time_calls(call: Callable[[Any], Any], items: Sequence[Any], count: int) -> list[float]:
    clock = time.perf_counter
    for item in items[:5]:  # warm-up
        call(item)
    times = []
    size = len(items)
    for i in range(count):
        item = items[i % size]
        started = clock()
        call(item)
        times.append(clock() - started)
    return times


def _raw_runtime(
    model: Model[Any, Any], table: Table, *, pool: int, batch_size: int, calls: int, rounds: int
) -> tuple[str, _Timing]:
    """The bundle's runtime called directly, on the same rows in the layout it expects."""
    from ._model import RunnerModel
    from .adapters._joblib import JoblibRunner
    from .adapters._onnx import OnnxRunner

    runner = model.runner if isinstance(model, RunnerModel) else None
    singles = [_table_rows(table, i, i + 1) for i in range(pool)]
    batch = _table_rows(table, 0, batch_size)
    if isinstance(runner, JoblibRunner):
        estimator = runner.estimator
        method = (
            estimator.predict_proba
            if model.signature.outputs.has_probabilities
            else estimator.predict
        )
        encoded = [runner.encode(single) for single in singles]
        whole = runner.encode(batch)
        return "scikit-learn", _Timing(
            _time_calls(method, encoded, calls),
            _time_calls(lambda _: method(whole), [None], rounds),
        )
    if isinstance(runner, OnnxRunner):
        run = runner.session.run
        feeds = [runner._feed(single) for single in singles]
        whole_feed = runner._feed(batch)
        return "onnxruntime", _Timing(
            _time_calls(lambda feed: run(None, feed), feeds, calls),
            _time_calls(lambda _: run(None, whole_feed), [None], rounds),
        )
    return "raw (n/a)", _Timing()


def _table_rows(table: Table, start: int, stop: int) -> Table:
    from ._signature import Table

    stop = min(stop, table.length)
    if isinstance(table.data, dict):
        data: Any = {name: column[start:stop] for name, column in table.data.items()}
    else:
        data = table.data[start:stop]
    return Table(table.names, stop - start, data)


def _duration(seconds: float) -> str:
    if seconds != seconds:  # noqa: PLR0124 - NaN: not measured
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:,.2f} ms"
    return f"{seconds:,.2f} s"


def _rate(per_second: float) -> str:
    if per_second != per_second:  # noqa: PLR0124 - NaN: not measured
        return "-"
    return f"{per_second:,.0f} rows/s"


def _ratio(mine: float, theirs: float) -> str:
    if mine != mine or theirs != theirs or not theirs:  # noqa: PLR0124 - NaN: not measured
        return "-"
    return f"{mine / theirs:.2f}x"


# -- serve --------------------------------------------------------------------------------------


def _run_serve(args: argparse.Namespace) -> int:
    import _thread
    import logging
    import signal
    import threading

    from ._deps import require

    flask = require("flask", extra="serve", feature="modelkit serve")
    waitress_server = require("waitress.server", extra="serve", feature="modelkit serve")
    from .flask import EXTENSION_KEY, ModelKit, ModelKitState

    if not args.url_prefix.startswith("/"):
        raise _UsageError(f"--url-prefix must start with '/', got {args.url_prefix!r}")
    target = Path(args.path)
    # No static folder: the server answers the endpoints below and nothing from the disk.
    app = flask.Flask("modelkit-serve", root_path=os.getcwd(), static_folder=None)
    if target.suffix.lower() == ".toml":
        app.config["MODELKIT_CONFIG"] = str(target.resolve())
        if args.lock is not None:
            app.config["MODELKIT_LOCK"] = str(Path(args.lock).resolve())
    else:
        if args.lock is not None:
            raise _UsageError("--lock goes with a registry config (.toml), not a single bundle")
        described = _describe_bundle(args.path)  # fails now, before the port is opened
        app.config["MODELKIT_MODELS"] = {
            described.manifest.name: {"path": str(target.resolve()), "sha256": described.digest}
        }
    # Loaded after the server starts, so that /healthz answers while a large model loads.
    app.config["MODELKIT_LAZY"] = True
    app.config["MODELKIT_MAX_BATCH_SIZE"] = args.max_batch_size
    app.config["MODELKIT_MAX_BODY_SIZE"] = args.max_body_size
    app.config["MODELKIT_MAX_RESPONSE_SIZE"] = args.max_response_size
    prefix = args.url_prefix.rstrip("/")
    ModelKit(app, url_prefix=prefix)
    state: ModelKitState = app.extensions[EXTENSION_KEY]
    ready = threading.Event()
    failures: list[BaseException] = []
    _add_health_checks(flask, app, state, ready)

    # A server logs: what it loaded, and waitress's own warnings (a full task queue...).
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=log_format)
    for handler in logging.getLogger("modelkit").handlers:
        if handler.get_name() == _LOG_HANDLER:
            handler.setFormatter(logging.Formatter(log_format))
            handler.setLevel(logging.INFO)
    # waitress buffers a whole body (to a temporary file) before the app sees it: its own limit
    # keeps that to the body limit, and its refusals get the endpoints' JSON error shape.
    listeners: dict[int, Any] = {}
    server = waitress_server.create_server(
        app,
        map=listeners,
        host=args.host,
        port=args.port,
        threads=args.threads,
        max_request_body_size=args.max_body_size + 1,  # waitress refuses at >= this
    )
    _answer_server_errors_in_json(list(listeners.values()), args.max_body_size)

    def load_models() -> None:
        try:
            state.registry  # noqa: B018 - the property loads the registry
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
            _thread.interrupt_main(signal.SIGTERM)
        else:
            ready.set()

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        threading.Thread(target=load_models, name="modelkit-load", daemon=True).start()
        host = server.effective_host
        if ":" in str(host):
            host = f"[{host}]"
        print(
            f"Serving on http://{host}:{server.effective_port} (models under {prefix or '/'}, "
            "health at /healthz and /readyz); Ctrl-C to stop",
            file=_err(),
            flush=True,
        )
        server.run()  # returns on SIGTERM or Ctrl-C, once the requests in flight are answered
    except KeyboardInterrupt:
        pass  # stopped before (or after) the loop: the same clean stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):
            server.close()
        state.close()
    if failures:
        raise failures[0]
    print("Stopped.", file=_err())
    return EXIT_OK


def _answer_server_errors_in_json(listeners: Sequence[Any], max_body_size: int) -> None:
    """Make waitress answer the requests it refuses itself (a body over the limit, a malformed
    request) in the endpoints' JSON error shape, instead of its plain-text page."""
    from waitress.channel import HTTPChannel  # type: ignore[import-untyped]
    from waitress.server import BaseWSGIServer  # type: ignore[import-untyped]
    from waitress.task import ErrorTask  # type: ignore[import-untyped]

    class JsonErrorTask(ErrorTask):  # type: ignore[misc]  # waitress ships no types
        def execute(self) -> None:
            problem = self.request.error
            code, reason = int(problem.code), str(problem.reason)
            if code == 413:
                kind = "request_too_large"
                message = (
                    f"The request body is larger than the {max_body_size} bytes this server "
                    "accepts (--max-body-size); send fewer records per request."
                )
            else:
                kind = "_".join(reason.lower().split())
                message = f"{reason}: {problem.body}"
            body = json.dumps({"error": {"type": kind, "message": message}}).encode()
            self.status = f"{code} {reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):  # type: ignore[misc]
        error_task_class = JsonErrorTask

    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = JsonErrorChannel


def _add_health_checks(flask: Any, app: Any, state: Any, ready: Any) -> None:
    """``/healthz`` (the process answers) and ``/readyz`` (the models are loaded)."""

    def reply(status: int, body: dict[str, Any]) -> Any:
        return app.response_class(json.dumps(body), status=status, mimetype="application/json")

    def healthz() -> Any:
        return reply(200, {"status": "ok"})

    def readyz() -> Any:
        if ready.is_set() and state.is_loaded:
            return reply(200, {"status": "ready", "models": state.registry.names()})
        return reply(503, {"status": "loading"})

    def hold_until_ready() -> Any:
        # The model endpoints would block on the loading registry: answer 503 at once instead.
        if flask.request.path in ("/healthz", "/readyz") or ready.is_set():
            return None
        response = reply(
            503,
            {"error": {"type": "not_ready", "message": "The models are loading; retry shortly."}},
        )
        response.headers["Retry-After"] = "1"
        return response

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET", "HEAD"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET", "HEAD"])
    app.before_request(hold_until_ready)
