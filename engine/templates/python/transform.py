"""{{name}}: sets a field on each JSON document. A starting point: change
`process`, declare new config keys in transform.toml, then `sluice test`."""

import sluice


class Tag(sluice.Transform):
    def __init__(self, config):
        # transform.toml's defaults are filled in by the engine.
        self.field = config["field"]
        self.value = config["value"]

    def process(self, record, out):
        document = record.json()  # Not JSON: an `invalid-json` dead letter.
        if not isinstance(document, dict):
            raise sluice.InvalidInput("expected a JSON object")
        document[self.field] = self.value
        out.push(document)


WitWorld = sluice.export(Tag)
