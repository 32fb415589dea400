// One pipeline: status and controls, live chart, stages with their module
// versions (deploy another, roll back), sink state, the dead-letter browser
// with replay, and the live tap.

import { del, get, post, tap } from "../api.js";
import { formatNumber, formatSeconds, lineChart, RateMeter, RollingSeries } from "../charts.js";
import { busy, fill, h, statusBadge, toast } from "../dom.js";
import { poll } from "./poll.js";

/** Records the pipeline's quarantined stages hold. */
function held(p) {
  return p.stages.reduce((n, s) => n + (s.held ?? 0), 0);
}

export function pipelineDetail(root, name) {
  const path = `/api/pipelines/${encodeURIComponent(name)}`;
  const header = h("div", { class: "actions" }, h("h1", {}, name), h("span", { class: "loading" }, "Loading…"));
  const summary = h("div", { class: "card", id: "summary" });
  const chartCard = h("div", { class: "card", id: "chart-pipeline" });
  const stages = h("div", { class: "card", id: "stages" });
  const sink = h("div", { class: "card", id: "sink" });
  const deadLetters = h("div", { class: "card", id: "dead-letters" });
  const tapCard = h("div", { class: "card", id: "tap" });
  root.append(header, summary, chartCard, h("h2", {}, "Stages"), stages, h("h2", {}, "Sink"), sink,
    h("h2", {}, "Dead letters"), deadLetters, h("h2", {}, "Live tap"), tapCard);

  const series = new RollingSeries(["in", "out", "failed"]);
  const chart = lineChart(chartCard, "Records per second", series);
  const meter = new RateMeter();
  let stopTap = null;
  get(`${path}/history`).then((history) => {
    if (series.times.length > 0) return;
    series.prefill(history, ["read_per_second", "written_per_second", "dead_lettered_per_second"]);
    chart.update();
  }).catch(() => {});

  /** Runs a change with `button` busy; `done` is the message (or makes it from the result). */
  async function act(button, label, action, done) {
    try {
      const result = await busy(button, label, action);
      toast(typeof done === "function" ? done(result) : done);
    } catch (error) {
      toast(error.message, true);
    }
  }

  function renderHeader(p) {
    const running = p.status === "running" || p.status === "starting";
    const pause = h("button", { id: "pause", onclick: (e) => act(e.target, "Pausing…", () => post(`${path}/pause`), "Paused") }, "Pause");
    // A finished pipeline's source ended (a file read to its end): starting
    // it again reads that input again.
    const again = p.status === "finished";
    const resume = h("button", { id: "resume", onclick: (e) => {
      if (again && !confirm(`Run ${name} again? Its source is read again from the start.`)) return;
      act(e.target, "Starting…", () => post(`${path}/resume`), again ? "Started again" : "Resumed");
    } }, again ? "Run again" : "Resume");
    const remove = h("button", { class: "danger", onclick: async (e) => {
      if (!confirm(`Delete pipeline ${name}?`)) return;
      await act(e.target, "Deleting…", () => del(path), "Deleted");
      location.hash = "#/";
    } }, "Delete");
    fill(header, h("h1", {}, name), statusBadge(p.status), running ? pause : resume,
      p.origin === "api" ? h("a", { href: `#/deploy/${encodeURIComponent(name)}` }, h("button", {}, "Edit")) : h("span", { class: "muted" }, `from ${p.origin}`),
      p.origin === "api" ? remove : null);
  }

  function renderSummary(p) {
    fill(summary, 
      h("div", {}, h("strong", {}, "Source: "), p.source),
      h("div", {}, h("strong", {}, "Sink: "), p.sink),
      h("div", { id: "counters" }, "Read ", h("strong", { "data-field": "read" }, formatNumber(p.records.read)),
        " · written ", h("strong", { "data-field": "written" }, formatNumber(p.records.written)),
        " · dead-lettered ", h("strong", { "data-field": "dead_lettered" }, formatNumber(p.records.dead_lettered)),
        " · dropped ", formatNumber(p.records.dropped),
        " · consumer lag ", formatNumber(p.consumer_lag)),
      p.status === "restarting"
        ? h("p", { class: "error-text", id: "pipeline-restarting" },
          `Failed ${p.restart.attempts} time${p.restart.attempts === 1 ? "" : "s"} in a row; next attempt in `,
          h("span", { "data-field": "next_attempt" }, formatSeconds((p.restart.next_attempt_in_ms ?? 0) / 1000)),
          ` (${p.restart.total} restarts in all).`)
        : null,
      p.error ? h("p", { class: "error-text", id: "pipeline-error" }, p.error) : null,
      held(p) > 0 ? h("p", { class: "error-text", id: "quarantine" },
        `A stage is quarantined: its module crashed on most recent records. It holds ${formatNumber(held(p))} records and reads nothing more until a fixed version is deployed below; nothing it holds is committed.`) : null);
  }

  async function renderStages(p) {
    const rows = await Promise.all(p.stages.map(async (s) => {
      const registry = s.version !== null && s.version !== undefined;
      const moduleName = s.module.split("@")[0];
      let controls = h("span", { class: "muted" }, "file module");
      if (registry) {
        const versions = await get(`/api/modules/${encodeURIComponent(moduleName)}`).then((m) => m.versions).catch(() => []);
        const select = h("select", { "aria-label": `version for ${s.name}`, "data-stage-select": s.name },
          versions.map((v) => h("option", { value: v.version, selected: v.version === s.version }, `v${v.version} · ${v.sha256.slice(0, 10)}`)));
        const deploy = h("button", { "data-deploy": s.name, onclick: (e) => act(e.target, "Deploying…",
          () => post(`${path}/stages/${encodeURIComponent(s.name)}/deploy`, { module: moduleName, version: Number(select.value) }),
          `Stage ${s.name} now runs v${select.value}`).then(refresh) }, "Deploy");
        const rollback = h("button", { "data-rollback": s.name, disabled: s.previous.length === 0, onclick: (e) => act(e.target, "Rolling back…",
          () => post(`${path}/stages/${encodeURIComponent(s.name)}/rollback`), `Stage ${s.name} rolled back`).then(refresh) }, "Roll back");
        controls = h("div", { class: "actions" }, select, deploy, rollback);
      }
      return h("tr", { "data-stage": s.name },
        h("td", {}, s.name, s.quarantined ? h("div", { class: "error-text", "data-quarantined": s.name }, `quarantined · holds ${formatNumber(s.held)}`) : null),
        h("td", { class: "mono", "data-field": "module" }, s.module, h("div", { class: "muted" }, s.sha256 ? s.sha256.slice(0, 12) : "")),
        ...STAGE_COUNTERS.map(([field]) => h("td", { class: "num", "data-field": field })),
        h("td", {}, controls));
    }));
    fill(stages, p.stages.length === 0 ? h("p", { class: "empty" }, "No transform stages.") : h("table", {},
      h("thead", {}, h("tr", {}, ...["Stage", "Module", "In", "Out", "Failed", "Time/record", "Batch p50 / p99", "Recycles", "Workers", "Version"]
        .map((t, i) => h("th", { class: i >= 2 && i <= 8 ? "num" : "" }, t)))),
      h("tbody", {}, rows)));
  }

  function renderSink(p) {
    const s = p.sink_state;
    fill(sink, h("div", {},
      `Open files ${s.open_files} · files committed ${formatNumber(s.files_committed)} · bytes written ${formatNumber(s.bytes_written)}`,
      ` · pending bulk items ${s.pending_items} · retries ${s.retries} · commit p99 ${formatSeconds(s.commit_p99_seconds)}`));
  }

  async function renderDeadLetters() {
    let page;
    try {
      page = await get(`${path}/dead-letters?limit=50`);
    } catch (error) {
      fill(deadLetters, h("p", { class: "error-text" }, error.message));
      return;
    }
    if (page.dead_letters.length === 0) {
      fill(deadLetters, h("p", { class: "empty" }, "No dead letters."));
      return;
    }
    const boxes = [];
    const rows = page.dead_letters.map((d) => {
      const box = h("input", { type: "checkbox", value: d.id, disabled: d.replayed, "aria-label": `select dead letter ${d.id}` });
      boxes.push(box);
      const value = d.record.value ?? `(binary, ${d.record.value_base64?.length ?? 0} base64 chars)`;
      return h("tr", { "data-dead-letter": d.id },
        h("td", {}, box),
        h("td", { class: "mono" }, d.id),
        h("td", {}, d.time),
        h("td", {}, d.stage, d.module ? h("div", { class: "muted mono" }, d.module.name) : null),
        h("td", {}, h("strong", {}, d.error.kind), h("div", { class: "error-text" }, d.error.message)),
        h("td", {}, h("pre", {}, String(value).slice(0, 300))),
        h("td", {}, d.replayed ? "replayed" : ""));
    });
    const replay = h("button", { class: "primary", id: "replay", onclick: (e) => {
      const ids = boxes.filter((b) => b.checked).map((b) => Number(b.value));
      if (ids.length === 0) return toast("Select dead letters to replay first", true);
      act(e.target, "Replaying…", () => post(`${path}/dead-letters/replay`, { ids }),
        (outcome) => `Replayed ${outcome.replayed}; ${outcome.dead_lettered_again} failed again`).then(renderDeadLetters);
    } }, "Replay selected");
    fill(deadLetters, 
      h("div", { class: "actions" }, replay, h("span", { class: "muted" }, `${page.pending} pending · newest ${page.dead_letters.length} of at most ${page.kept_at_most} kept`)),
      h("table", {}, h("thead", {}, h("tr", {}, ...["", "Id", "Time", "Stage", "Error", "Record", ""].map((t) => h("th", {}, t)))), h("tbody", {}, rows)));
  }

  function renderTap(p) {
    if (tapCard.dataset.ready) return;
    tapCard.dataset.ready = "1";
    const stageSelect = h("select", { "aria-label": "tap stage", id: "tap-stage" }, p.stages.map((s) => h("option", { value: s.name }, s.name)));
    const sideSelect = h("select", { "aria-label": "tap side", id: "tap-side" }, h("option", { value: "" }, "in and out"), h("option", { value: "in" }, "in"), h("option", { value: "out" }, "out"));
    const list = h("div", { class: "tap", id: "tap-records" }, h("p", { class: "muted" }, "Start the tap to see records pass (sampled, at most 20 per second)."));
    const start = h("button", { id: "tap-start", onclick: () => {
      if (stopTap) { stopTap(); stopTap = null; start.textContent = "Start"; return; }
      fill(list, h("p", { class: "muted" }, "Waiting for records…"));
      start.textContent = "Stop";
      stopTap = tap(name, stageSelect.value, sideSelect.value, (event) => {
        if (list.querySelector("p")) fill(list);
        const line = event.skipped
          ? h("div", { class: "muted" }, `${event.skipped} records skipped (slow reader)`)
          : h("div", { class: "tapped" }, h("span", { class: "side" }, event.side), h("code", {}, event.record.value ?? "(binary)"));
        list.prepend(line);
        while (list.children.length > 200) list.lastChild.remove();
      }, (error) => {
        stopTap = null;
        start.textContent = "Start";
        if (error) toast(`Tap: ${error.message}`, true);
      });
    } }, "Start");
    fill(tapCard, p.stages.length === 0 ? h("p", { class: "empty" }, "No stages to tap.")
      : h("div", {}, h("div", { class: "actions" }, "Stage", stageSelect, sideSelect, start), list));
  }

  // Live cells of a stage row, refreshed in place every poll.
  const STAGE_COUNTERS = [
    ["records_in", (s) => formatNumber(s.records_in)],
    ["records_out", (s) => formatNumber(s.records_out)],
    ["records_failed", (s) => formatNumber(s.records_failed)],
    ["time", (s) => (s.nanos_per_record ? `${formatNumber(s.nanos_per_record / 1000)} µs` : "–")],
    ["latency", (s) => `${formatSeconds(s.batch_p50_seconds)} / ${formatSeconds(s.batch_p99_seconds)}`],
    ["recycles", (s) => formatNumber(s.recycles)],
    ["workers", (s) => formatNumber(s.workers)],
  ];
  function updateStageCounters(p) {
    for (const s of p.stages) {
      const row = stages.querySelector(`tr[data-stage="${CSS.escape(s.name)}"]`);
      if (!row) continue;
      for (const [field, format] of STAGE_COUNTERS) row.querySelector(`[data-field="${field}"]`).textContent = format(s);
    }
  }

  let lastStages = "";
  async function refresh() {
    try { show(await get(path)); } catch (error) { toast(error.message, true); }
  }
  async function show(p) {
    const now = Date.now() / 1000;
    const rates = ["read", "written", "dead_lettered"].map((f) => meter.rate(f, p.records[f], now));
    if (rates[0] !== null) {
      series.push(now, rates);
      chart.update();
    }
    renderHeader(p);
    renderSummary(p);
    renderSink(p);
    renderTap(p);
    // Stage rows hold form state (a chosen version): rebuild them only
    // when a stage's module changes, else refresh their numbers in place.
    const stageKey = JSON.stringify(p.stages.map((s) => [s.name, s.module, s.sha256, s.previous.length, s.quarantined]));
    if (stageKey !== lastStages) {
      lastStages = stageKey;
      await renderStages(p);
    }
    updateStageCounters(p);
  }

  const stopPolling = poll(() => get(path), show, (error) => {
    fill(header, h("h1", {}, name));
    fill(summary, h("p", { class: "error-text" }, error.status === 404 ? `No pipeline named ${name}.` : error.message));
  });
  renderDeadLetters();
  const dlqTimer = setInterval(() => {
    // Keep the selection: only reload when nothing is ticked.
    if (!deadLetters.querySelector("input:checked")) renderDeadLetters();
  }, 3000);
  return () => {
    stopPolling();
    clearInterval(dlqTimer);
    if (stopTap) stopTap();
  };
}
