"""The batch encoding of `wit/transform.wit` (its `batch` record), read and
written in one place. Seven words per record: key offset, key length
(0xffffffff: no key), value offset, value length, first header, header
count, input position; four words per header; a minimum s64 timestamp means
none."""

from collections import namedtuple

RECORD_WORDS = 7
HEADER_WORDS = 4
NO_KEY = 0xFFFFFFFF
NO_TIMESTAMP = -(1 << 63)

Batch = namedtuple("Batch", "data records timestamps headers")


def decode(batch):
    """The batch's records, in order, as `sluice.Record`s."""
    from . import Record

    data, words, stamps, header_words = batch
    records = []
    append = records.append
    stamped = len(stamps)
    # Per record in the interpreter, so no slices of `words` or lists built
    # for records without headers.
    for position, w in enumerate(range(0, len(words) - RECORD_WORDS + 1, RECORD_WORDS)):
        key_len = words[w + 1]
        value_offset = words[w + 2]
        header_count = words[w + 5]
        headers = []
        if header_count:
            for h in range(words[w + 4] * HEADER_WORDS, (words[w + 4] + header_count) * HEADER_WORDS, HEADER_WORDS):
                name_offset, name_len, v_offset, v_len = header_words[h:h + HEADER_WORDS]
                name = data[name_offset:name_offset + name_len].decode("utf-8", "replace")
                headers.append((name, data[v_offset:v_offset + v_len]))
        stamp = stamps[position] if position < stamped else NO_TIMESTAMP
        append(Record(
            data[value_offset:value_offset + words[w + 3]],
            None if key_len == NO_KEY else data[words[w]:words[w] + key_len],
            None if stamp == NO_TIMESTAMP else stamp,
            headers,
            words[w + 6],
        ))
    return records


def encode(outputs):
    """(data, record words, timestamps, header words) for a list of
    (value, key, timestamp, headers, input position) tuples."""
    data = bytearray()
    words = []
    stamps = []
    header_words = []
    for value, key, stamp, headers, index in outputs:
        if key is None:
            key_offset, key_len = 0, NO_KEY
        else:
            key_offset, key_len = len(data), len(key)
            data += key
        value_offset = len(data)
        data += value
        first_header = len(header_words) // HEADER_WORDS
        for name, header_value in headers:
            name = name.encode("utf-8")
            header_words += (len(data), len(name), len(data) + len(name), len(header_value))
            data += name
            data += header_value
        words += (key_offset, key_len, value_offset, len(value), first_header, len(headers), index)
        stamps.append(NO_TIMESTAMP if stamp is None else stamp)
    return bytes(data), words, stamps, header_words
