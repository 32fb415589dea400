// The sluice guest SDK for JavaScript: write a transform as an object with
// `init(config)` and `process(record, out)`, build it with `sluice build`
// (componentize-js underneath), and get a WebAssembly component the sluice
// engine runs like any other.
//
//     import { defineTransform } from "sluice";
//
//     export const { init, process } = defineTransform({
//       init(config) { this.suffix = config.suffix ?? ""; },
//       process(record, out) { out.push(record.text().toUpperCase() + this.suffix); },
//     });
//
// The host calls the component once per batch (see `wit/transform.wit`);
// this module decodes the batch into `Record`s, runs `process` on each and
// encodes what was pushed to `Output`. A throw from `process` sends that
// record to the dead letters with the error as the reason, and the rest of
// the batch goes on; `TransformError` chooses the kind.

import { open as openTable, get as tableGet } from "sluice:transform/lookup@0.1.0";
import { sha256 as hostSha256 } from "sluice:transform/hash@0.1.0";

const RECORD_WORDS = 7;
const HEADER_WORDS = 4;
const NO_KEY = 0xffffffff;
const NO_TIMESTAMP = -(1n << 63n);

const NO_HEADERS = Object.freeze([]);
const utf8 = new TextDecoder("utf-8", { fatal: true });
const lossy = new TextDecoder("utf-8");
const encoder = new TextEncoder();

/** A record the transform refuses: a dead letter with `kind` and the message. */
export class TransformError extends Error {
  constructor(message, kind = "error") {
    super(message);
    this.kind = kind;
  }
}

export class InvalidInput extends TransformError {
  constructor(message) {
    super(message, "invalid-input");
  }
}

export class Unsupported extends TransformError {
  constructor(message) {
    super(message, "unsupported");
  }
}

/** One input record: `key` (Uint8Array or null), `value` (Uint8Array),
 * `timestamp` (ms since the Unix epoch, or null) and `headers`, an array
 * of [name, Uint8Array] pairs. */
export class Record {
  constructor(value, { key = null, timestamp = null, headers = NO_HEADERS, index = 0 } = {}) {
    this.value = typeof value === "string" ? encoder.encode(value) : value;
    this.key = typeof key === "string" ? encoder.encode(key) : key;
    this.timestamp = timestamp;
    this.headers = headers;
    this.index = index;
  }

  /** The value as a string; an `invalid-utf8` error if it is not UTF-8. */
  text() {
    try {
      return utf8.decode(this.value);
    } catch {
      throw new TransformError("value is not valid UTF-8", "invalid-utf8");
    }
  }

  /** The value parsed as JSON; an `invalid-json` error if it is not. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (error) {
      if (error instanceof TransformError) throw error;
      throw new TransformError(`value is not JSON: ${error.message}`, "invalid-json");
    }
  }

  /** The first header called `name`, as a Uint8Array, or null. */
  header(name) {
    const found = this.headers.find(([header]) => header === name);
    return found ? found[1] : null;
  }

  /** The key as a string, or null. */
  keyText() {
    return this.key === null ? null : lossy.decode(this.key);
  }
}

function asBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === "string") return encoder.encode(value);
  return encoder.encode(JSON.stringify(value));
}

/** Where `process` puts its results: zero, one or many records per input.
 * A pushed record keeps the input's key and timestamp unless told otherwise. */
export class Output {
  constructor() {
    this.records = [];
    this.input = null;
  }

  /** Emits a record. `value` is a Uint8Array, a string (UTF-8) or anything
   * JSON can encode, written as JSON. `options`: key, timestamp, headers. */
  push(value, options = {}) {
    const input = this.input;
    this.records.push({
      value: asBytes(value),
      key: "key" in options ? (options.key === null ? null : asBytes(options.key)) : input.key,
      timestamp: "timestamp" in options ? options.timestamp : input.timestamp,
      headers: options.headers ? options.headers.map(([name, v]) => [name, asBytes(v)]) : NO_HEADERS,
      index: input.index,
    });
  }

  /** Emits an exact copy of `record`: key, value, headers, timestamp. */
  forward(record) {
    this.records.push({
      value: record.value,
      key: record.key,
      timestamp: record.timestamp,
      headers: record.headers,
      index: this.input.index,
    });
  }
}

/** Opens lookup table `name`; call it from `init`, so a stage not granted
 * `lookup:NAME` fails its deploy with a clear message. `get(key)` returns
 * the row as an object, or null. */
export function lookup(name) {
  const handle = host(() => openTable(name));
  return {
    name,
    get(key) {
      const row = tableGet(handle, key);
      return row === undefined || row === null ? null : JSON.parse(row);
    },
  };
}

/** SHA-256 of `data` from the host's native hash; the stage needs the
 * `hash` capability (JavaScript has no fallback fast enough to offer). */
export function sha256(data) {
  return host(() => hostSha256(asBytes(data)));
}

// A host call whose `result` error comes back as a plain Error with the
// host's message (the bindings throw an object carrying it as `payload`).
function host(call) {
  try {
    return call();
  } catch (error) {
    if (error instanceof Error) throw error;
    throw new Error(error?.payload ?? String(error));
  }
}

export function decode({ data: raw, records: words, timestamps, headers: headerWords }) {
  const data = asBytes(raw);
  const records = [];
  // Keys, values and headers are views of the batch buffer, not copies:
  // it is not reused while the transform holds them.
  for (let p = 0, w = 0; w < words.length; p++, w += RECORD_WORDS) {
    const keyLen = words[w + 1];
    const valueOffset = words[w + 2];
    const headerCount = words[w + 5];
    let headers = NO_HEADERS;
    if (headerCount > 0) {
      headers = [];
      for (let h = words[w + 4], end = h + headerCount; h < end; h++) {
        const hw = h * HEADER_WORDS;
        const name = lossy.decode(data.subarray(headerWords[hw], headerWords[hw] + headerWords[hw + 1]));
        headers.push([name, data.subarray(headerWords[hw + 2], headerWords[hw + 2] + headerWords[hw + 3])]);
      }
    }
    const stamp = p < timestamps.length ? timestamps[p] : NO_TIMESTAMP;
    // Built field by field: the constructor's options object costs more
    // than the rest of decoding in an interpreter.
    const record = Object.create(Record.prototype);
    record.value = data.subarray(valueOffset, valueOffset + words[w + 3]);
    record.key = keyLen === NO_KEY ? null : data.subarray(words[w], words[w] + keyLen);
    record.timestamp = stamp === NO_TIMESTAMP ? null : Number(stamp);
    record.headers = headers;
    record.index = words[w + 6];
    records.push(record);
  }
  return records;
}

export function encode(outputs) {
  // Indexed loops and no iterators or closures: this runs per record in
  // an interpreter, where each of those costs microseconds a batch.
  const count = outputs.length;
  let size = 0;
  let headerCount = 0;
  for (let i = 0; i < count; i++) {
    const r = outputs[i];
    size += r.value.length + (r.key === null ? 0 : r.key.length);
    const headers = r.headers;
    for (let h = 0; h < headers.length; h++) size += headers[h][0].length * 3 + headers[h][1].length;
    headerCount += headers.length;
  }
  const data = new Uint8Array(size);
  const words = new Uint32Array(count * RECORD_WORDS);
  const timestamps = new BigInt64Array(count);
  const headerWords = new Uint32Array(headerCount * HEADER_WORDS);
  let at = 0;
  let header = 0;
  for (let i = 0; i < count; i++) {
    const r = outputs[i];
    const w = i * RECORD_WORDS;
    if (r.key === null) {
      words[w] = 0;
      words[w + 1] = NO_KEY;
    } else {
      data.set(r.key, at);
      words[w] = at;
      words[w + 1] = r.key.length;
      at += r.key.length;
    }
    data.set(r.value, at);
    words[w + 2] = at;
    words[w + 3] = r.value.length;
    at += r.value.length;
    words[w + 4] = header;
    words[w + 5] = r.headers.length;
    words[w + 6] = r.index;
    for (let h = 0; h < r.headers.length; h++, header++) {
      const name = encoder.encode(r.headers[h][0]);
      const value = r.headers[h][1];
      const hw = header * HEADER_WORDS;
      data.set(name, at);
      headerWords[hw] = at;
      headerWords[hw + 1] = name.length;
      at += name.length;
      data.set(value, at);
      headerWords[hw + 2] = at;
      headerWords[hw + 3] = value.length;
      at += value.length;
    }
    timestamps[i] = r.timestamp === null || r.timestamp === undefined ? NO_TIMESTAMP : BigInt(r.timestamp);
  }
  return { data: data.subarray(0, at), records: words, timestamps, headers: headerWords };
}

function describe(error) {
  if (error instanceof TransformError) return [error.kind, error.message];
  // The engine's own limits, named as the engine names a Rust guest's.
  if (error === "out of memory") {
    return ["out-of-memory", "out of memory: the instance's memory cap (the stage's max_memory_mb) was reached"];
  }
  if (error instanceof Error && error.name === "InternalError" && /recursion/.test(error.message)) {
    return ["stack-overflow", `${error.name}: ${error.message}`];
  }
  if (error instanceof Error) {
    // The innermost frame outside this SDK: `function@file:line:column`.
    const frame = (error.stack ?? "").split("\n").find((line) => line.includes("@") && !line.includes("sluice.js:"));
    const at = frame ? ` (at ${frame.slice(frame.indexOf("@") + 1)})` : "";
    return ["exception", `${error.name}: ${error.message}${at}`];
  }
  return ["exception", `thrown: ${String(error)}`];
}

/** Runs `transform` over a batch: { outputs, errors }. Shared by the
 * component's exports and the SDK's tests. */
export function runBatch(transform, batch) {
  const out = new Output();
  const errors = [];
  for (const record of decode(batch)) {
    const mark = out.records.length;
    out.input = record;
    try {
      transform.process(record, out);
    } catch (error) {
      out.records.length = mark;
      const [kind, message] = describe(error);
      errors.push({ input: record.index, kind, message });
    }
  }
  return { outputs: out.records, errors };
}

/** The component's exports for `transform`, an object with `process` and
 * optionally `init`: `export const { init, process } = defineTransform({...})`. */
export function defineTransform(transform) {
  let ready = false;
  return {
    init(config) {
      try {
        transform.init?.(config ? JSON.parse(config) : {});
        ready = true;
      } catch (error) {
        throw error instanceof Error ? error.message : String(error);
      }
    },
    process(input) {
      if (!ready) {
        const count = input.records.length / RECORD_WORDS;
        const errors = Array.from({ length: count }, (_, input) => ({
          input,
          kind: "not-initialized",
          message: "process was called before init",
        }));
        return { records: encode([]), errors };
      }
      const { outputs, errors } = runBatch(transform, input);
      return { records: encode(outputs), errors };
    },
  };
}
