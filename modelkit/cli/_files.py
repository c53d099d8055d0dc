"""The files ``modelkit predict`` reads and writes, a chunk at a time: JSON lines, CSV, Parquet.

A reader yields :class:`Chunk` s of rows ready for the model (in signature order), with the rows
it could not read set aside as :class:`Reject` s; a writer takes the scored rows of each chunk and
their prediction columns, under a temporary name until it is committed.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .._atomic import AtomicFile
from .._fast_path import tuple_getter
from ..errors import InvalidInputError
from ._app import usage_error

if TYPE_CHECKING:
    from .._spec import ColumnSpec, TabularInputs

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_NAMES",
    "READERS",
    "WRITERS",
    "Chunk",
    "Reader",
    "Reject",
    "Writer",
    "format_of",
]

DEFAULT_CHUNK_SIZE = 10_000
FORMAT_NAMES = ("jsonl", "csv", "parquet")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def format_of(path: str, flag: str | None, option: str) -> str:
    """A file's format: ``flag`` when given (``--input-format``...), else from its extension."""
    if flag is not None:
        return flag
    suffix = Path(path).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        raise usage_error(
            f"cannot tell the format of {path!r} from its extension ({', '.join(_EXTENSIONS)}); "
            f"pass {option} {{{','.join(FORMAT_NAMES)}}}"
        ) from None


class _BadRowError(Exception):
    """A row that cannot be scored: which field (if one), and why."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Reject:
    """A row set aside: where it is, the field at fault (if one), why, and the row as read."""

    line: int
    field: str | None
    error: str
    content: Any


@dataclass
class Chunk:
    """Rows read from the input, ready for the model, and those set aside on the way."""

    lines: list[int] = field(default_factory=list)  # each row's line (or row) number
    # What the output carries of each row: a sequence in the order of the reader's columns,
    # or (JSON lines, whose records may differ) the record itself.
    rows: list[Any] = field(default_factory=list)
    records: list[tuple[Any, ...]] = field(default_factory=list)  # signature order
    contents: list[Any] = field(default_factory=list)  # each row as read (for rejects)
    rejects: list[Reject] = field(default_factory=list)

    def add(self, line: int, row: Any, record: tuple[Any, ...], content: Any) -> None:
        """Keep one row the model will score."""
        self.lines.append(line)
        self.rows.append(row)
        self.records.append(record)
        self.contents.append(content)

    def subset(self, keep: Sequence[int]) -> Chunk:
        return Chunk(
            [self.lines[i] for i in keep],
            [self.rows[i] for i in keep],
            [self.records[i] for i in keep],
            [self.contents[i] for i in keep],
            self.rejects,
        )


class Reader:
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

    def chunks(self, size: int) -> Iterator[Chunk]:
        """The file's rows, ``size`` at a time (bad rows among them as rejects)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _missing_field(names: Sequence[str], row: Mapping[str, Any]) -> _BadRowError:
    missing = [name for name in names if name not in row]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return _BadRowError(missing[0], f"field {missing[0]!r} is missing{more}")


class _TextReader(Reader):
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

    def chunks(self, size: int) -> Iterator[Chunk]:
        getter = tuple_getter(self.names)
        keep_rows = self.keep_rows
        loads = json.loads
        chunk = Chunk()
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
                    Reject(number, problem.field, problem.message, self.content(text))
                )
            else:
                chunk.add(number, row if keep_rows else (), values, text)
            count += 1
            if count >= size:
                yield chunk
                chunk, count = Chunk(), 0
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

    def chunks(self, size: int) -> Iterator[Chunk]:
        header = self.header
        width = len(header)
        plan = [(header.index(c.name), _cell_reader(c)) for c in self.spec]
        positions = [position for position, _ in plan]
        keep_rows = self.keep_rows
        reader = self.reader
        chunk = Chunk()
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
                    Reject(number, problem.field, problem.message, self.content(fields))
                )
            else:
                row: Any = ()
                if keep_rows:
                    row = list(fields)
                    for position, value in zip(positions, values, strict=True):
                        row[position] = value  # as the model reads it
                chunk.add(number, row, values, fields)
            count += 1
            if count >= size:
                yield chunk
                chunk, count = Chunk(), 0
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


class _ParquetReader(Reader):
    unit = "row"

    def __init__(self, path: Path, inputs: TabularInputs, *, keep_rows: bool) -> None:
        from .._deps import require

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

    def chunks(self, size: int) -> Iterator[Chunk]:
        names = self.file.schema_arrow.names
        positions = [names.index(name) for name in self.names]
        keep_rows = self.keep_rows
        for batch in self.file.iter_batches(batch_size=size):
            columns = [column.to_pylist() for column in batch.columns]
            rows = list(zip(*columns, strict=True))
            length = len(rows)
            chunk = Chunk(
                lines=list(range(self._done + 1, self._done + length + 1)),
                rows=rows if keep_rows else [()] * length,
                records=list(zip(*[columns[p] for p in positions], strict=True)),
                contents=rows,
            )
            self._done += length
            yield chunk

    def close(self) -> None:
        self.file.close()


READERS: dict[str, Callable[..., Reader]] = {
    "jsonl": _JsonLinesReader,
    "csv": _CsvReader,
    "parquet": _ParquetReader,
}


class Writer:
    """Writes scored rows to one output file (under a temporary name until committed).

    Args:
        file: where to write.
        reader: the input's reader, which says how its rows are laid out.
        prediction_names: the prediction columns, for the header of an output without rows.
    """

    def __init__(self, file: AtomicFile, reader: Reader, prediction_names: list[str]) -> None:
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


class _JsonLinesWriter(Writer):
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


class _CsvWriter(Writer):
    def __init__(self, file: AtomicFile, reader: Reader, prediction_names: list[str]) -> None:
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


class _ParquetWriter(Writer):
    _TYPES: ClassVar[dict[str, str]] = {
        "number": "float64",
        "integer": "int64",
        "boolean": "bool_",
        "datetime": "string",  # written back as read: ISO 8601 text
        "string": "string",
    }

    def __init__(self, file: AtomicFile, reader: Reader, prediction_names: list[str]) -> None:
        from .._deps import require

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


WRITERS: dict[str, Callable[..., Writer]] = {
    "jsonl": _JsonLinesWriter,
    "csv": _CsvWriter,
    "parquet": _ParquetWriter,
}
