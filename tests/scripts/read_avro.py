"""An independent reader for the lake: fastavro (not apache-avro, not
sluice) reads every visible .avro file under a directory and prints one
JSON line per record, with bytes fields as their length and SHA-256, plus
the file's codec and name. Hidden files (being written) are skipped, as
Hadoop readers do."""
import hashlib
import json
import os
import sys

import fastavro


def show(value):
    if isinstance(value, bytes):
        return {"length": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, dict):
        return {k: show(v) for k, v in value.items()}
    if isinstance(value, list):
        return [show(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


for root, dirs, files in os.walk(sys.argv[1]):
    for name in sorted(files):
        if name.startswith((".", "_")) or not name.endswith(".avro"):
            continue
        path = os.path.join(root, name)
        with open(path, "rb") as f:
            reader = fastavro.reader(f)
            codec = reader.codec
            for record in reader:
                print(json.dumps({"file": os.path.relpath(path, sys.argv[1]), "codec": codec, "record": show(record)}))
