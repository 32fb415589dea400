// Pipelines overview: every pipeline's status and rates, with live charts
// of records in, out and failed across all of them.

import { get } from "../api.js";
import { lineChart, RateMeter, RollingSeries, formatNumber, formatSeconds } from "../charts.js";
import { fill, h, statusBadge } from "../dom.js";
import { poll } from "./poll.js";

export function overview(root) {
  const table = h("div", { class: "card", id: "pipelines" }, h("p", { class: "loading" }, "Loading pipelines…"));
  const charts = h("div", { class: "grid" });
  root.append(
    h("div", { class: "actions" }, h("h1", {}, "Pipelines"), h("a", { href: "#/deploy" }, h("button", { class: "primary" }, "New pipeline"))),
    charts,
    table,
  );
  const throughput = new RollingSeries(["in", "out"]);
  const errors = new RollingSeries(["dead-lettered", "dropped"]);
  const throughputCard = h("div", { class: "card", id: "chart-throughput" });
  const errorsCard = h("div", { class: "card", id: "chart-errors" });
  charts.append(throughputCard, errorsCard);
  const throughputChart = lineChart(throughputCard, "Records per second, all pipelines", throughput);
  const errorsChart = lineChart(errorsCard, "Failed records per second, all pipelines", errors);
  const meter = new RateMeter();
  // The last 15 minutes, kept by the engine, before the live samples.
  get("/api/history").then((history) => {
    if (throughput.times.length > 0) return;
    throughput.prefill(history, ["read_per_second", "written_per_second"]);
    errors.prefill(history, ["dead_lettered_per_second", "dropped_per_second"]);
    throughputChart.update();
    errorsChart.update();
  }).catch(() => {});

  return poll(() => get("/api/pipelines"), (pipelines) => {
    const now = Date.now() / 1000;
    const total = (field) => pipelines.reduce((n, p) => n + p.records[field], 0);
    const rate = (key, value) => meter.rate(key, value, now);
    const totals = ["read", "written", "dead_lettered", "dropped"].map((f) => rate(`all.${f}`, total(f)));
    if (totals[0] !== null) {
      throughput.push(now, [totals[0], totals[1]]);
      errors.push(now, [totals[2], totals[3]]);
      throughputChart.update();
      errorsChart.update();
    }
    if (pipelines.length === 0) {
      fill(table, h("p", { class: "empty" }, "No pipelines yet. ", h("a", { href: "#/deploy" }, "Deploy one"), " or start the engine with pipeline files."));
      return;
    }
    const rows = pipelines.map((p) => {
      const perSecond = (field) => rate(`${p.name}.${field}`, p.records[field]);
      const p99 = Math.max(...p.stages.map((s) => s.batch_p99_seconds ?? 0));
      const p50 = Math.max(...p.stages.map((s) => s.batch_p50_seconds ?? 0));
      return h("tr", { "data-pipeline": p.name },
        h("td", {}, h("a", { href: `#/pipelines/${encodeURIComponent(p.name)}` }, p.name), h("div", { class: "muted" }, p.source)),
        h("td", {}, statusBadge(p.status)),
        h("td", { class: "num", "data-field": "in" }, formatNumber(perSecond("read"))),
        h("td", { class: "num", "data-field": "out" }, formatNumber(perSecond("written"))),
        h("td", { class: "num" }, formatNumber(perSecond("dead_lettered"))),
        h("td", { class: "num", "data-field": "written" }, formatNumber(p.records.written)),
        h("td", { class: "num", "data-field": "dlq" }, formatNumber(p.dead_letters_pending)),
        h("td", { class: "num" }, formatNumber(p.consumer_lag)),
        h("td", { class: "num" }, p.stages.length ? `${formatSeconds(p50)} / ${formatSeconds(p99)}` : "–"));
    });
    fill(table, h("table", {},
      h("thead", {}, h("tr", {}, ...["Pipeline", "Status", "In/s", "Out/s", "Errors/s", "Written", "DLQ", "Lag", "Batch p50 / p99"]
        .map((t, i) => h("th", { class: i >= 2 ? "num" : "" }, t)))),
      h("tbody", {}, rows)));
  }, (error) => fill(table, h("p", { class: "error-text" }, `Cannot load pipelines: ${error.message}`)));
}
