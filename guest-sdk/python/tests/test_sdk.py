"""The Python SDK's batch code and per-record driver, in plain Python (no
component): `python3 -m unittest discover guest-sdk/python/tests`."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sluice  # noqa: E402
from sluice._batch import NO_KEY, NO_TIMESTAMP, Batch, decode, encode  # noqa: E402


def batch_of(records):
    """A batch as the host sends it: (value, key, timestamp, headers, index)."""
    return Batch(*encode(records))


class BatchEncoding(unittest.TestCase):
    def test_records_survive_a_round_trip(self):
        records = [
            (b"first", b"k1", 1700000000000, [("h", b"v"), ("x-trace", b"\x00\xff")], 0),
            (b"", None, None, [], 1),
            ("héllo".encode(), b"", -5, [], 2),
        ]
        decoded = decode(batch_of(records))
        self.assertEqual([r.value for r in decoded], [b"first", b"", "héllo".encode()])
        self.assertEqual([r.key for r in decoded], [b"k1", None, b""])
        self.assertEqual([r.timestamp for r in decoded], [1700000000000, None, -5])
        self.assertEqual(decoded[0].headers, [("h", b"v"), ("x-trace", b"\x00\xff")])
        self.assertEqual([r.index for r in decoded], [0, 1, 2])

    def test_the_layout_is_the_wit_one(self):
        data, words, stamps, headers = encode([(b"v", None, None, [("n", b"w")], 7)])
        self.assertEqual(words, [0, NO_KEY, 0, 1, 0, 1, 7])
        self.assertEqual(stamps, [NO_TIMESTAMP])
        self.assertEqual(headers, [1, 1, 2, 1])
        self.assertEqual(data, b"vnw")


class Driver(unittest.TestCase):
    def run_lines(self, transform, lines):
        batch = batch_of([(line.encode(), b"key", 42, [], i) for i, line in enumerate(lines)])
        return sluice.run_batch(transform, batch)

    def test_outputs_inherit_key_and_timestamp_and_failures_are_per_record(self):
        class Upper(sluice.Transform):
            def process(self, record, out):
                text = record.text()
                if text == "bad":
                    raise sluice.InvalidInput("no thanks")
                if text == "crash":
                    raise KeyError("boom")
                out.push(text.upper())
                out.push({"twice": text}, key=None, headers=[("h", "v")])

        outputs, errors = self.run_lines(Upper(None), ["a", "bad", "crash", "b"])
        self.assertEqual([o[0] for o in outputs], [b"A", b'{"twice":"a"}', b"B", b'{"twice":"b"}'])
        self.assertEqual(outputs[0][1:4], (b"key", 42, []))
        self.assertEqual(outputs[1][1:4], (None, 42, [("h", b"v")]))
        self.assertEqual([o[4] for o in outputs], [0, 0, 3, 3])
        self.assertEqual(errors[0], (1, "invalid-input", "no thanks"))
        self.assertEqual(errors[1][:2], (2, "exception"))
        self.assertIn("KeyError: 'boom' (at ", errors[1][2])

    def test_outputs_of_a_failed_record_are_discarded(self):
        class Half(sluice.Transform):
            def process(self, record, out):
                out.push("partial")
                raise sluice.Error("changed my mind", "custom")

        outputs, errors = self.run_lines(Half(None), ["x"])
        self.assertEqual(outputs, [])
        self.assertEqual(errors, [(0, "custom", "changed my mind")])

    def test_invalid_utf8_and_json_are_named(self):
        class Parse(sluice.Transform):
            def process(self, record, out):
                out.push(record.json())

        batch = batch_of([(b"\xff", None, None, [], 0), (b"{", None, None, [], 1)])
        _, errors = sluice.run_batch(Parse(None), batch)
        self.assertEqual([e[1] for e in errors], ["invalid-utf8", "invalid-json"])
        self.assertEqual(errors[0][2], "value is not valid UTF-8 at byte 0")

    def test_sha256_without_a_host_is_hashlib(self):
        self.assertEqual(sluice.sha256("abc").hex()[:16], "ba7816bf8f01cfea")


if __name__ == "__main__":
    unittest.main()
