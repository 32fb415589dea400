// The TOML editor: a text area with line numbers that marks the lines the
// engine's validation points at, and jumps to an error when it is clicked.

import { h } from "./dom.js";

export function tomlEditor(initial) {
  const gutter = h("div", { class: "gutter" });
  const area = h("textarea", { spellcheck: "false", "aria-label": "Pipeline TOML", id: "toml" });
  area.value = initial;
  const element = h("div", { class: "editor" }, gutter, area);
  let badLines = new Set();

  function renderGutter() {
    const lines = area.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: lines }, (_, i) =>
      h("div", { class: badLines.has(i + 1) ? "bad" : "", "data-line": i + 1 }, i + 1)));
    gutter.scrollTop = area.scrollTop;
  }
  area.addEventListener("input", renderGutter);
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  renderGutter();

  return {
    element,
    value: () => area.value,
    /** Marks the lines of `errors` ([{line, column, …}]). */
    mark(errors) {
      badLines = new Set(errors.map((e) => e.line));
      renderGutter();
    },
    /** Puts the cursor at line:column and scrolls there. */
    goTo(line, column) {
      const lines = area.value.split("\n");
      const offset = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0) + Math.max(0, column - 1);
      area.focus();
      area.setSelectionRange(offset, offset);
      area.scrollTop = Math.max(0, (line - 5) * 18);
    },
  };
}
