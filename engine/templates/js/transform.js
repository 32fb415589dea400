// {{name}}: sets a field on each JSON document. A starting point: change
// `process`, declare new config keys in transform.toml, then `sluice test`.
import { defineTransform, InvalidInput } from "./sdk/js/sluice.js";

export const { init, process } = defineTransform({
  init(config) {
    // transform.toml's defaults are filled in by the engine.
    this.field = config.field;
    this.value = config.value;
  },

  process(record, out) {
    const document = record.json(); // Not JSON: an `invalid-json` dead letter.
    if (document === null || typeof document !== "object" || Array.isArray(document)) {
      throw new InvalidInput("expected a JSON object");
    }
    document[this.field] = this.value;
    out.push(document);
  },
});
