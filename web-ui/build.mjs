// Builds dist/: the dashboard's own files plus the chart library, so the
// engine serves everything itself (no CDN; it works offline).
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "vendor"), { recursive: true });
cpSync(join(here, "src"), dist, { recursive: true });
for (const file of ["uPlot.iife.min.js", "uPlot.min.css"]) {
  cpSync(join(here, "node_modules", "uplot", "dist", file), join(dist, "vendor", file));
}
console.log(`built ${dist}`);
