// Browser test of the dashboard in real headless Chromium (Debian's
// `chromium`, driven by playwright-core) against a running `sluice serve`.
//
// Run by the Rust end-to-end test `dashboard`, which starts the engine and
// passes: SLUICE_URL, SLUICE_TOKEN, SLUICE_MODULE_PARSE (log-parse .wasm),
// SLUICE_MODULE_COPY (passthrough .wasm), SLUICE_FIXTURE_LOG (web log
// lines), SLUICE_MODULE_HOSTILE (a module that traps on `trap`),
// SLUICE_WORK_DIR (scratch) and SLUICE_SCREENSHOTS (artefacts).

import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run through the Rust test \`dashboard\`)`);
  return value;
};
const url = env("SLUICE_URL");
const token = env("SLUICE_TOKEN");
const screenshots = env("SLUICE_SCREENSHOTS");
const work = env("SLUICE_WORK_DIR");
mkdirSync(screenshots, { recursive: true });

let browser;
let page;
const pageErrors = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.setDefaultTimeout(30_000);
});

after(async () => {
  await browser?.close();
});

const shot = (name) => page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });

async function ingest(lines) {
  const response = await fetch(`${url}/ingest/weblogs`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "text/plain" },
    body: lines.map((l) => `${l}\n`).join(""),
  });
  assert.equal(response.status, 200, await response.text());
}

const logLines = readFileSync(env("SLUICE_FIXTURE_LOG"), "utf8").split("\n").filter(Boolean);

const PIPELINE = (extra = "") => `name = "web"

[source]
type = "kafka"
topics = ["weblogs"]
${extra}
[batch]
linger_ms = 20

[[stage]]
name = "parse"
module = "parse"
parallelism = 2

[sink]
type = "file"
path = ${JSON.stringify(join(work, "web.ndjson"))}

[dead_letter]
type = "file"
path = ${JSON.stringify(join(work, "web.dead-letter.ndjson"))}
`;

test("the dashboard deploys, watches, replays and rolls back", async () => {
  // Empty states before anything exists.
  await page.goto(url);
  await page.getByText("No pipelines yet").waitFor();
  await shot("01-empty-overview");

  // Without a token, a change is refused with the server's message.
  await page.goto(`${url}/#/modules`);
  await page.getByText("No modules uploaded yet").waitFor();
  await page.setInputFiles("#module-file", env("SLUICE_MODULE_PARSE"));
  await page.fill("#module-name", "parse");
  await page.click("#upload");
  await page.locator("#upload-result").getByText("Upload refused (401)").waitFor();

  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");

  // A file that is not a component is refused with the reason.
  const notWasm = join(work, "notes.wasm");
  writeFileSync(notWasm, "not wasm at all");
  await page.setInputFiles("#module-file", notWasm);
  await page.fill("#module-name", "notes");
  await page.click("#upload");
  await page.locator("#upload-result").getByText("Upload refused (422)").waitFor();
  assert.match(await page.locator("#upload-result").innerText(), /not a WebAssembly file/);

  await page.setInputFiles("#module-file", env("SLUICE_MODULE_PARSE"));
  await page.fill("#module-name", "parse");
  await page.click("#upload");
  await page.locator("#upload-result").getByText("Stored parse version 1").waitFor();
  await page.locator('tr[data-module="parse"]').waitFor();
  // The config keys log-parse declares are documented with the module.
  const format = page.locator('tr[data-module="parse"] [data-config-key="format"]');
  assert.match(await format.innerText(), /format string = "apache_combined"/);
  assert.match(await page.locator('tr[data-module="parse"] .module-config').innerText(), /max_line_bytes integer = 65536/);
  await shot("02-module-uploaded");

  // The editor marks the line of an error the engine found.
  await page.goto(`${url}/#/deploy`);
  await page.fill("#toml", PIPELINE('start_from = "yesterday"'));
  await page.click("#deploy");
  const error = page.locator("#validation li").first();
  await error.waitFor();
  const errorLine = Number(await error.getAttribute("data-line"));
  assert.equal(errorLine, 6, await error.innerText());
  assert.match(await error.innerText(), /start_from/);
  await page.locator(`.gutter div.bad[data-line="${errorLine}"]`).waitFor();
  await shot("03-validation-error");

  // A stage config the module does not declare is marked at its key, with
  // the key it probably meant.
  await page.fill("#toml", PIPELINE().replace('parallelism = 2', 'parallelism = 2\n[stage.config]\nformatt = "apache_combined"'));
  await page.click("#deploy");
  const typo = page.locator("#validation li", { hasText: "formatt" }).first();
  await typo.waitFor();
  assert.equal(Number(await typo.getAttribute("data-line")), 15, await typo.innerText());
  assert.match(await typo.innerText(), /unknown key `formatt`; did you mean `format`\?/);
  await page.locator('.gutter div.bad[data-line="15"]').waitFor();

  // Fixed, it deploys and the page moves to the pipeline.
  await page.fill("#toml", PIPELINE());
  await page.click("#deploy");
  await page.waitForURL(/#\/pipelines\/web$/);
  await page.locator('[data-status="running"]').first().waitFor();

  // Records posted through REST ingest move the counters and the chart.
  await ingest(logLines.slice(0, 200));
  await page.locator('#counters [data-field="written"]', { hasText: "200" }).waitFor();
  await page.waitForFunction(() => Number(document.querySelector("#chart-pipeline")?.dataset.peak) > 0);
  await ingest([...logLines.slice(200, 300), "this is not a web log line"]);
  await page.locator('#counters [data-field="written"]', { hasText: "300" }).waitFor();
  await page.locator('#counters [data-field="dead_lettered"]', { hasText: "1" }).waitFor();
  await shot("04-pipeline-running");

  await page.goto(url);
  const row = page.locator('tr[data-pipeline="web"]');
  await row.locator('[data-field="written"]', { hasText: "300" }).waitFor();
  await page.waitForFunction(() => Number(document.querySelector("#chart-throughput")?.dataset.points) >= 2);
  await shot("05-overview");


  // The bad record is in the dead-letter view with its reason.
  await row.getByRole("link", { name: "web" }).click();
  const letter = page.locator("tr[data-dead-letter]").first();
  await letter.getByText("this is not a web log line").waitFor();
  const letterText = await letter.innerText();
  assert.match(letterText, /parse@1/);
  await shot("06-dead-letter");

  // A second version (a passthrough) is uploaded and deployed into the stage…
  await page.goto(`${url}/#/modules`);
  await page.setInputFiles("#module-file", env("SLUICE_MODULE_COPY"));
  await page.fill("#module-name", "parse");
  await page.click("#upload");
  await page.locator("#upload-result").getByText("Stored parse version 2").waitFor();
  await page.goto(`${url}/#/pipelines/web`);
  await page.locator('[data-stage-select="parse"]').selectOption("2");
  await page.click('[data-deploy="parse"]');
  await page.locator('tr[data-stage="parse"] [data-field="module"]', { hasText: "parse@2" }).waitFor();
  // Both workers took the new version.
  assert.equal(await page.locator('tr[data-stage="parse"] [data-field="workers"]').innerText(), "2");

  // …so the dead letter, replayed, goes through and is written.
  await page.locator("tr[data-dead-letter] input[type=checkbox]").first().check();
  await page.click("#replay");
  await page.locator("#toast", { hasText: "Replayed 1; 0 failed again" }).waitFor();
  await page.locator("tr[data-dead-letter]").first().getByText("replayed").waitFor();
  await page.locator('#counters [data-field="written"]', { hasText: "301" }).waitFor();
  const written = readFileSync(join(work, "web.ndjson"), "utf8").trim().split("\n");
  assert.equal(written.at(-1), "this is not a web log line");
  await shot("07-replayed");

  // Roll back to version 1.
  await page.click('[data-rollback="parse"]');
  await page.locator('tr[data-stage="parse"] [data-field="module"]', { hasText: "parse@1" }).waitFor();
  await page.locator('[data-rollback="parse"][disabled]').waitFor();
  await shot("08-rolled-back");

  // The live tap shows records leaving the stage.
  await page.locator("#tap-side").selectOption("out");
  await page.click("#tap-start");
  await page.getByText("Waiting for records").waitFor();
  await ingest([logLines[300]]);
  const tapped = page.locator("#tap-records .tapped").first();
  await tapped.waitFor();
  assert.match(await tapped.innerText(), /"client":\{"ip":"/);
  await page.click("#tap-start");
  await shot("09-tap");

  // Pause and resume.
  await page.click("#pause");
  await page.locator('[data-status="paused"]').first().waitFor();
  await page.click("#resume");
  await page.locator('[data-status="running"]').first().waitFor();

  // Charts open with the recent past the engine keeps, not empty: once it
  // has sampled some traffic, a page opened now starts with points from
  // before it was opened.
  const deadline = Date.now() + 30_000;
  for (let n = 0; ; n++) {
    const history = await (await fetch(`${url}/api/pipelines/web/history`)).json();
    if (history.samples.some((s) => s.written_per_second > 0) && history.samples.length >= 2) break;
    assert.ok(Date.now() < deadline, `no history sampled: ${JSON.stringify(history)}`);
    await ingest([logLines[(310 + n) % logLines.length]]);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const opened = Date.now() / 1000;
  await page.goto(`${url}/#/pipelines/web`);
  await page.reload();
  await page.waitForFunction(() => Number(document.querySelector("#chart-pipeline")?.dataset.points) >= 2);
  const first = Number(await page.locator("#chart-pipeline").getAttribute("data-first"));
  assert.ok(first < opened - 3, `the chart starts before the page opened (${first} vs ${opened})`);
  await page.goto(url);

  // A module that crashes on every record is quarantined, and the page says
  // so: the stage holds its records until a fixed version is deployed.
  await page.goto(`${url}/#/modules`);
  await page.setInputFiles("#module-file", env("SLUICE_MODULE_HOSTILE"));
  await page.fill("#module-name", "hostile");
  await page.click("#upload");
  await page.locator("#upload-result").getByText("Stored hostile version 1").waitFor();
  const poisoned = `name = "poisoned"
[source]
type = "kafka"
topics = ["jobs"]
[batch]
linger_ms = 20
[[stage]]
name = "work"
module = "hostile"
[stage.quarantine]
window = 20
min_records = 10
[sink]
type = "file"
path = ${JSON.stringify(join(work, "jobs.ndjson"))}
[dead_letter]
type = "file"
path = ${JSON.stringify(join(work, "jobs.dead-letter.ndjson"))}
`;
  const created = await fetch(`${url}/api/pipelines/poisoned`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${token}` },
    body: poisoned,
  });
  assert.equal(created.status, 201, await created.text());
  const traps = await fetch(`${url}/ingest/jobs`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "text/plain" },
    body: "trap\n".repeat(50),
  });
  assert.equal(traps.status, 200, await traps.text());
  await page.goto(`${url}/#/pipelines/poisoned`);
  await page.locator('[data-quarantined="work"]').waitFor();
  await page.locator("#quarantine").waitFor();
  assert.match(await page.locator("#quarantine").innerText(), /quarantined/);
  await shot("10-quarantined");

  // The Cluster page: an engine on its own lists itself, alive, owning its
  // Kafka pipelines' partitions. What to expect comes from the API, once
  // the consumer of `web` has been assigned its partitions again (it was
  // paused and resumed above).
  let cluster;
  const assigned = Date.now() + 30_000;
  for (;;) {
    cluster = await (await fetch(`${url}/api/cluster`, { headers: { Authorization: `Bearer ${token}` } })).json();
    if (cluster.pipelines.find((p) => p.pipeline === "web")?.partitions.length > 0) break;
    assert.ok(Date.now() < assigned, `no partition of web owned: ${JSON.stringify(cluster)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.equal(cluster.cluster, null);
  const self = cluster.members.find((m) => m.this_engine);
  assert.ok(self, `this engine among the members: ${JSON.stringify(cluster.members)}`);
  await page.click('nav a[data-nav="cluster"]');
  await page.waitForURL(/#\/cluster$/);
  await page.locator("#cluster-name", { hasText: "single engine" }).waitFor();
  const member = page.locator(`tr[data-member="${self.id}"]`);
  await member.locator('[data-field="this"]', { hasText: "this engine" }).waitFor();
  await member.locator('[data-status="alive"]').waitFor();
  assert.equal(await member.locator('[data-field="version"]').innerText(), self.version);
  const web = page.locator('[data-cluster-pipeline="web"]');
  for (const part of cluster.pipelines.find((p) => p.pipeline === "web").partitions) {
    assert.equal(part.member, self.id);
    await web.locator(`tr[data-partition="${part.topic}/${part.partition}"] [data-field="member"]`, { hasText: self.id }).waitFor();
  }
  // The member's count agrees with the partitions listed under it.
  await page.waitForFunction((id) => {
    const owned = [...document.querySelectorAll('[data-partition] [data-field="member"]')].filter((td) => td.textContent.includes(id)).length;
    return owned > 0 && document.querySelector(`tr[data-member="${id}"] [data-field="partitions"]`)?.textContent === String(owned);
  }, self.id);
  await shot("11-cluster");

  // A failed request shows an error, and the next good poll brings the
  // page back.
  await page.route("**/api/cluster", (route) => route.fulfill({
    status: 503, contentType: "application/json", body: JSON.stringify({ error: "the engine is unavailable (test)" }),
  }));
  await page.locator("#cluster-error", { hasText: "the engine is unavailable (test)" }).waitFor();
  await shot("12-cluster-error");
  await page.unroute("**/api/cluster");
  await member.locator('[data-status="alive"]').waitFor();

  assert.deepEqual(pageErrors, [], "no script errors in the page");
});
