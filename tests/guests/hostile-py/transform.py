"""Misbehaves on purpose, chosen by the record's value; anything else is
passed on. The engine must contain each: a dead letter with the reason,
and the records around it go on."""

import sys

import sluice


class Hostile(sluice.Transform):
    def process(self, record, out):
        what = record.text()
        if what == "loop":
            while True:
                pass
        if what == "oom":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if what == "raise":
            raise ValueError("refused on purpose")
        if what == "recurse":
            def down(n):
                return down(n + 1) + 1
            down(0)
        if what == "exit":
            sys.exit(3)
        # Not hostile: the imports, reached through the SDK.
        if what.startswith("lookup:"):
            row = sluice.lookup("geoip").get(what[len("lookup:"):])
            out.push({"row": row})
            return
        if what.startswith("sha256:"):
            out.push(sluice.sha256(what[len("sha256:"):]).hex())
            return
        out.forward(record)


WitWorld = sluice.export(Hostile)
