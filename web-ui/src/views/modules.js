// Modules: what is uploaded (versions, hashes, sizes, users, the config
// keys each declares), uploading a new version with progress, and deleting
// unused modules.

import { del, get, uploadModule } from "../api.js";
import { busy, fill, h, toast } from "../dom.js";

export function modulesView(root) {
  const list = h("div", { class: "card", id: "modules" }, h("p", { class: "loading" }, "Loading modules…"));
  const name = h("input", { id: "module-name", placeholder: "name, e.g. log-parse", pattern: "[a-z0-9][a-z0-9_-]*", required: true });
  const file = h("input", { id: "module-file", type: "file", accept: ".wasm,application/wasm" });
  const progress = h("progress", { max: 1, value: 0, hidden: true });
  const message = h("div", { id: "upload-result" });
  file.addEventListener("change", () => {
    if (!name.value && file.files[0]) name.value = file.files[0].name.replace(/\.wasm$/, "").replaceAll("_", "-").toLowerCase();
  });
  const upload = h("button", { class: "primary", id: "upload", onclick: async () => {
    if (!file.files[0] || !name.value) return toast("Choose a .wasm file and a name", true);
    progress.hidden = false;
    progress.value = 0;
    fill(message);
    try {
      const result = await busy(upload, "Uploading…", () => uploadModule(name.value, file.files[0], (p) => { progress.value = p; }));
      const v = result.version;
      fill(message, h("span", {}, result.created ? `Stored ${v.name} version ${v.version}` : `Same bytes as ${v.name} version ${v.version}; nothing new stored`));
      toast(`${v.name}@${v.version} ready`);
      load();
    } catch (error) {
      fill(message, h("span", { class: "error-text" }, `Upload refused (${error.status}): ${error.message}`));
    } finally {
      progress.hidden = true;
    }
  } }, "Upload");
  root.append(
    h("h1", {}, "Modules"),
    h("div", { class: "card" }, h("h2", {}, "Upload a transform"),
      h("p", { class: "muted" }, "A WebAssembly component implementing sluice:transform (built for wasm32-wasip2). Each upload with new bytes becomes the next version."),
      h("div", { class: "actions" }, file, name, upload, progress), message),
    list);

  async function load() {
    let modules;
    try {
      modules = await get("/api/modules");
    } catch (error) {
      fill(list, h("p", { class: "error-text" }, error.message));
      return;
    }
    if (modules.length === 0) {
      fill(list, h("p", { class: "empty" }, "No modules uploaded yet."));
      return;
    }
    fill(list, h("table", {},
      h("thead", {}, h("tr", {}, ...["Module", "Versions", "Config it takes", "Used by", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, modules.map((m) => h("tr", { "data-module": m.name },
        h("td", { class: "mono" }, m.name),
        h("td", {}, m.versions.map((v) => h("div", { class: "mono" }, `v${v.version} · ${v.sha256.slice(0, 12)} · ${(v.size / 1024).toFixed(0)} KiB · ${v.uploaded_at}`))),
        h("td", { class: "module-config" }, configDoc(m.config)),
        h("td", {}, m.used_by.length ? m.used_by.map((p) => h("div", {}, h("a", { href: `#/pipelines/${encodeURIComponent(p)}` }, p))) : h("span", { class: "muted" }, "unused")),
        h("td", {}, h("button", { class: "danger", disabled: m.used_by.length > 0, onclick: async (e) => {
          if (!confirm(`Delete every version of ${m.name}?`)) return;
          try { await busy(e.target, "Deleting…", () => del(`/api/modules/${encodeURIComponent(m.name)}`)); toast(`Deleted ${m.name}`); load(); } catch (error) { toast(error.message, true); }
        } }, "Delete")))))));
  }
  load();
}

// The keys a module declares (`[stage.config]` is checked against them).
function configDoc(config) {
  if (!config) return h("span", { class: "muted" }, "declares nothing: any config is passed to init");
  const keys = Object.entries(config);
  if (keys.length === 0) return h("span", { class: "muted" }, "no config");
  return h("dl", { class: "config-doc" }, keys.flatMap(([key, spec]) => [
    h("dt", { "data-config-key": key },
      h("code", {}, key), " ", h("span", { class: "muted" }, spec.type),
      spec.required ? h("span", { class: "error-text" }, " required") : null,
      spec.default !== undefined ? h("span", { class: "muted" }, ` = ${JSON.stringify(spec.default)}`) : null),
    h("dd", {}, spec.description || ""),
  ]));
}
