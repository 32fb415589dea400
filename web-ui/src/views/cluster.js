// Cluster: the engines sharing this engine's state (or this engine alone),
// whether each is alive, and per pipeline which engine reads each Kafka
// partition and how far behind it is.

import { get } from "../api.js";
import { formatNumber } from "../charts.js";
import { fill, h, statusBadge } from "../dom.js";
import { poll } from "./poll.js";

/** "45 s", "12 min", "3 h 5 min", "2 d 4 h": precise enough to compare engines. */
function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/**
 * The member's address as a link. Addresses come from other engines'
 * records in the shared state, so only http(s) ones become links.
 */
function addressLink(address) {
  let url;
  try { url = new URL(address); } catch { return h("span", { class: "mono" }, address); }
  if (url.protocol !== "http:" && url.protocol !== "https:") return h("span", { class: "mono" }, address);
  return h("a", { class: "mono", href: url.href }, address);
}

export function clusterView(root) {
  const name = h("span", { id: "cluster-name", class: "muted" });
  const members = h("div", { class: "card", id: "members" }, h("p", { class: "loading" }, "Loading the cluster…"));
  const partitionsTitle = h("h2", {}, "Partitions");
  const partitions = h("div", { id: "partitions" });
  root.append(
    h("div", { class: "actions" }, h("h1", {}, "Cluster"), name),
    members,
    partitionsTitle,
    partitions,
  );

  return poll(() => get("/api/cluster"), (cluster) => {
    partitionsTitle.hidden = false;
    fill(name, cluster.cluster ? h("span", {}, "cluster ", h("strong", { class: "mono" }, cluster.cluster)) : "single engine");
    const owned = new Map();
    for (const p of cluster.pipelines) {
      for (const part of p.partitions) owned.set(part.member, (owned.get(part.member) ?? 0) + 1);
    }

    fill(members, h("table", {},
      h("thead", {}, h("tr", {}, ...["Engine", "Address", "Version", "Uptime", "Last seen", "Partitions", "Status"]
        .map((t, i) => h("th", { class: i === 5 ? "num" : "" }, t)))),
      h("tbody", {}, cluster.members.map((m) => h("tr", { "data-member": m.id },
        h("td", {}, h("span", { class: "mono" }, m.id), m.this_engine ? h("span", { class: "tag", "data-field": "this" }, "this engine") : null),
        h("td", {}, addressLink(m.address)),
        h("td", { class: "mono", "data-field": "version" }, m.version),
        h("td", {}, formatDuration(m.uptime_seconds)),
        h("td", {}, m.last_seen_seconds === 0 ? "just now" : `${formatDuration(m.last_seen_seconds)} ago`),
        h("td", { class: "num", "data-field": "partitions" }, formatNumber(owned.get(m.id) ?? 0)),
        h("td", {}, statusBadge(m.alive ? "alive" : "gone")))))));

    if (cluster.pipelines.length === 0) {
      fill(partitions, h("div", { class: "card" }, h("p", { class: "empty" }, "No pipelines yet.")));
      return;
    }
    const thisEngine = cluster.members.find((m) => m.this_engine)?.id;
    fill(partitions, cluster.pipelines.map((p) => {
      const link = h("a", { href: `#/pipelines/${encodeURIComponent(p.pipeline)}` }, p.pipeline);
      // Only live members' partitions are listed, so a pipeline without any
      // is either not reading Kafka or between two assignments.
      if (p.partitions.length === 0) {
        return h("div", { class: "card", "data-cluster-pipeline": p.pipeline },
          h("strong", {}, link), h("p", { class: "muted" }, "No Kafka partitions owned by a live engine."));
      }
      const perMember = new Map();
      for (const part of p.partitions) perMember.set(part.member, (perMember.get(part.member) ?? 0) + 1);
      return h("div", { class: "card", "data-cluster-pipeline": p.pipeline },
        h("div", { class: "actions" }, h("strong", {}, link),
          h("span", { class: "muted" }, [...perMember].map(([member, n]) => `${member}${member === thisEngine ? " (this engine)" : ""}: ${n}`).join(" · "))),
        h("table", {},
          h("thead", {}, h("tr", {}, ...["Topic", "Partition", "Owner", "Lag"].map((t, i) => h("th", { class: i === 1 || i === 3 ? "num" : "" }, t)))),
          h("tbody", {}, p.partitions.map((part) => h("tr", { "data-partition": `${part.topic}/${part.partition}` },
            h("td", { class: "mono" }, part.topic),
            h("td", { class: "num" }, part.partition),
            h("td", { class: "mono", "data-field": "member" }, part.member, part.member === thisEngine ? h("span", { class: "tag" }, "this engine") : null),
            h("td", { class: "num", "data-field": "lag" }, formatNumber(part.lag)))))));
    }));
  }, (error) => {
    fill(name);
    fill(members, h("p", { class: "error-text", id: "cluster-error" }, `Cannot load the cluster: ${error.message}`));
    partitionsTitle.hidden = true;
    fill(partitions);
  });
}
