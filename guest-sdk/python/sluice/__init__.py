"""The sluice guest SDK for Python: write a transform as a class with one
method per record, build it with `sluice build` (componentize-py underneath),
and get a WebAssembly component the sluice engine runs like any other.

    import sluice

    class Upper(sluice.Transform):
        def __init__(self, config):
            self.suffix = config.get("suffix", "")

        def process(self, record, out):
            out.push(record.text().upper() + self.suffix)

    WitWorld = sluice.export(Upper)

The host calls the component once per batch (see `wit/transform.wit`); this
module decodes the batch into `Record`s, runs `process` on each, and encodes
what was pushed to `Output`. An exception from `process` sends that record
to the dead letters with the exception as the reason; the rest of the batch
goes on. `sluice.Error` (and `InvalidInput`, `Unsupported`) choose the kind.
"""

import hashlib
import json
import traceback

from ._batch import Batch, decode, encode

try:
    # Imported here, at build time: componentize-py bundles only what the
    # app has imported when it is snapshotted.
    from componentize_py_types import Err
    from wit_world.imports import hash as _hash_import
    from wit_world.imports import lookup as _lookup_import
    from wit_world.imports import types as _types
except ImportError:  # Plain Python (the SDK's own tests): no host to call.
    Err = _hash_import = _lookup_import = _types = None

__all__ = [
    "Transform", "Record", "Output", "Error", "InvalidInput", "Unsupported",
    "lookup", "sha256", "export",
]


class Error(Exception):
    """A record the transform refuses; it becomes a dead letter with `kind`
    (a short machine-readable class) and the message as the reason."""

    kind = "error"

    def __init__(self, message, kind=None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class InvalidInput(Error):
    kind = "invalid-input"


class Unsupported(Error):
    kind = "unsupported"


class Record:
    """One input record: `key` (bytes or None), `value` (bytes), `timestamp`
    (milliseconds since the Unix epoch, or None) and `headers`, a list of
    (name, bytes) pairs."""

    __slots__ = ("key", "value", "timestamp", "headers", "index")

    def __init__(self, value, key=None, timestamp=None, headers=None, index=0):
        self.value = value
        self.key = key
        self.timestamp = timestamp
        self.headers = [] if headers is None else headers
        self.index = index

    def text(self):
        """The value as a string; an `invalid-utf8` error if it is not UTF-8."""
        try:
            return self.value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise Error(f"value is not valid UTF-8 at byte {error.start}", "invalid-utf8") from None

    def json(self):
        """The value parsed as JSON; an `invalid-json` error if it is not."""
        try:
            return json.loads(self.text())
        except json.JSONDecodeError as error:
            raise Error(f"value is not JSON: {error}", "invalid-json") from None

    def header(self, name):
        """The first header called `name`, as bytes, or None."""
        for header, value in self.headers:
            if header == name:
                return value
        return None

    def __repr__(self):
        return f"Record(key={self.key!r}, value={self.value[:60]!r}, headers={self.headers!r})"


_INHERIT = object()


class Output:
    """Where `process` puts its results: zero, one or many records per input.
    A pushed record keeps the input's key and timestamp unless told otherwise."""

    __slots__ = ("_records", "_input")

    def __init__(self):
        self._records = []
        self._input = None

    def push(self, value, *, key=_INHERIT, timestamp=_INHERIT, headers=()):
        """Emits a record. `value` is bytes, a str (UTF-8) or anything else
        JSON can encode (a dict, a list), which is written as compact JSON."""
        record = self._input
        self._records.append((
            _as_bytes(value),
            record.key if key is _INHERIT else _as_key(key),
            record.timestamp if timestamp is _INHERIT else timestamp,
            [(name, _as_bytes(v)) for name, v in headers],
            record.index,
        ))

    def forward(self, record):
        """Emits an exact copy of `record`: key, value, headers, timestamp."""
        self._records.append((record.value, record.key, record.timestamp, record.headers, self._input.index))


def _as_bytes(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _as_key(key):
    return None if key is None else _as_bytes(key)


class Transform:
    """Subclass this: `__init__(self, config)` gets the stage's `config`
    table as a dict (raise to refuse it; the deploy fails with the message),
    and `process(self, record, out)` is called for each record in order."""

    def __init__(self, config):
        pass

    def process(self, record, out):
        raise NotImplementedError("a transform implements process(record, out)")


class _Table:
    def __init__(self, name, handle):
        self.name = name
        self._handle = handle

    def get(self, key):
        """The row for `key` as a dict, or None when no row matches."""
        row = _lookup_import.get(self._handle, key)
        return None if row is None else json.loads(row)


def lookup(name):
    """Opens lookup table `name`; call it from `__init__`, so a stage that is
    not granted `lookup:NAME` fails its deploy with a clear message."""
    try:
        return _Table(name, _lookup_import.open(name))
    except Err as error:
        raise RuntimeError(error.value) from None


_host_hash = None
_SDK_DIR = __file__.rsplit("/", 1)[0] + "/"


def sha256(data):
    """SHA-256 of `data`: the host's native hash when the stage is granted
    `hash`, Python's hashlib (compiled to wasm, slower) otherwise."""
    global _host_hash
    data = _as_bytes(data)
    if _host_hash is not False and _hash_import is not None:
        try:
            digest = _hash_import.sha256(data)
            _host_hash = True
            return bytes(digest)
        except Err:
            _host_hash = False
    return hashlib.sha256(data).digest()


def _describe(error):
    if isinstance(error, Error):
        return error.kind, str(error)
    # The interpreter's own limits, named as the engine names a Rust
    # guest's: the instance's memory cap, and runaway recursion.
    if isinstance(error, MemoryError):
        return "out-of-memory", "MemoryError: the instance's memory cap (the stage's max_memory_mb) was reached"
    if isinstance(error, RecursionError):
        return "stack-overflow", f"RecursionError: {error}"
    # Where in the transform it was raised: the innermost frame outside
    # this SDK (a refused lookup is raised here, but called from there).
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_SDK_DIR)]
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return "exception", f"{type(error).__name__}: {error}{where}"


def run_batch(transform, batch):
    """Runs `transform` over a decoded batch: (outputs, errors), where an
    error is (input position, kind, message). Shared by the component
    export and by `sluice.testing`."""
    out = Output()
    errors = []
    for record in decode(batch):
        mark = len(out._records)
        out._input = record
        try:
            transform.process(record, out)
        except Exception as error:  # Every failure is this record's, not the batch's.
            del out._records[mark:]
            kind, message = _describe(error)
            errors.append((record.index, kind, message))
    return out._records, errors


def export(transform_class):
    """The component's world for `transform_class`: assign it to `WitWorld`
    in the module `sluice build` builds."""
    types = _types
    state = {}

    class WitWorld:
        def init(self, config):
            try:
                settings = json.loads(config) if config else {}
                state["transform"] = transform_class(settings)
            except Exception as error:
                raise Err(f"{type(error).__name__}: {error}" if not isinstance(error, Error) else str(error))

        def process(self, input):
            transform = state.get("transform")
            if transform is None:
                count = len(input.records) // 7
                errors = [types.RecordError(i, "not-initialized", "process was called before init") for i in range(count)]
                return types.BatchOutput(types.Batch(b"", [], [], []), errors)
            records, errors = run_batch(transform, Batch(input.data, input.records, input.timestamps, input.headers))
            data, words, timestamps, headers = encode(records)
            return types.BatchOutput(
                types.Batch(data, words, timestamps, headers),
                [types.RecordError(i, kind, message) for i, kind, message in errors],
            )

    return WitWorld
