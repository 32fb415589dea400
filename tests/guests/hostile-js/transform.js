// Misbehaves on purpose, chosen by the record's value; anything else is
// passed on. The engine must contain each: a dead letter with the reason,
// and the records around it go on.
import { defineTransform, lookup, sha256 } from "./sdk/js/sluice.js";

export const { init, process } = defineTransform({
  process(record, out) {
    const what = record.text();
    if (what === "loop") for (;;) {}
    if (what === "oom") {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
    }
    if (what === "throw") throw new TypeError("refused on purpose");
    if (what === "throw-string") throw "a bare string";
    if (what === "recurse") {
      const down = (n) => down(n + 1) + 1;
      down(0);
    }
    // Not hostile: the imports, reached through the SDK.
    if (what.startsWith("lookup:")) {
      out.push({ row: lookup("geoip").get(what.slice("lookup:".length)) });
      return;
    }
    if (what.startsWith("sha256:")) {
      const digest = sha256(what.slice("sha256:".length));
      out.push(Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""));
      return;
    }
    out.forward(record);
  },
});
