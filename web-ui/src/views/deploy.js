// Create or edit a pipeline in a TOML editor; the engine validates it and
// its errors are marked at their lines.

import { get, put } from "../api.js";
import { busy, fill, h, toast } from "../dom.js";
import { tomlEditor } from "../editor.js";

const TEMPLATE = `name = "my-pipeline"

[source]
type = "kafka"
topics = ["weblogs"]

[[stage]]
name = "parse"
module = "log-parse"        # an uploaded module: "name" (latest) or "name@3"

[sink]
type = "file"
path = "/tmp/my-pipeline.ndjson"
`;

export function deployView(root, existing) {
  const title = h("h1", {}, existing ? `Edit ${existing}` : "New pipeline");
  const name = h("input", { id: "pipeline-name", value: existing || "", placeholder: "pipeline name", disabled: !!existing });
  const editor = tomlEditor(existing ? "" : TEMPLATE);
  const errors = h("div", { id: "validation" });
  const deploy = h("button", { class: "primary", id: "deploy", onclick: async () => {
    const text = editor.value();
    const target = name.value || /^\s*name\s*=\s*"([^"]+)"/m.exec(text)?.[1];
    if (!target) return toast("Give the pipeline a name", true);
    fill(errors);
    editor.mark([]);
    try {
      const view = await busy(deploy, "Deploying…", () => put(`/api/pipelines/${encodeURIComponent(target)}`, text, "application/toml"));
      toast(`Pipeline ${view.name} is ${view.status}`);
      location.hash = `#/pipelines/${encodeURIComponent(view.name)}`;
    } catch (error) {
      const found = error.body.errors || [];
      editor.mark(found);
      fill(errors, h("p", { class: "error-text" }, error.message),
        found.length ? h("ul", { class: "errors" }, found.map((e) => h("li", {
          "data-line": e.line,
          onclick: () => editor.goTo(e.line, e.column),
        }, `line ${e.line}, column ${e.column}${e.key ? ` (${e.key})` : ""}: ${e.message}`))) : null);
    }
  } }, existing ? "Save and redeploy" : "Deploy");
  root.append(title, h("div", { class: "card" },
    h("div", { class: "actions" }, name, deploy, h("span", { class: "muted" }, "Validated by the engine; errors are marked at their line.")),
    h("div", { style: "margin-top: 10px" }, editor.element), errors));
  if (existing) {
    get(`/api/pipelines/${encodeURIComponent(existing)}`)
      .then((p) => {
        const area = editor.element.querySelector("textarea");
        area.value = p.toml;
        area.dispatchEvent(new Event("input"));
      })
      .catch((error) => fill(errors, h("p", { class: "error-text" }, error.message)));
  }
}
