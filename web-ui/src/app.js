// The dashboard's entry point: the token box and a hash router that mounts
// one view at a time. A view returns a cleanup function; views that watch
// live numbers poll the API once a second until they are left.

import { setToken, token } from "./api.js";
import { overview } from "./views/overview.js";
import { pipelineDetail } from "./views/pipeline.js";
import { modulesView } from "./views/modules.js";
import { deployView } from "./views/deploy.js";
import { clusterView } from "./views/cluster.js";

const routes = [
  [/^#\/?$/, () => ["pipelines", overview]],
  [/^#\/pipelines\/([^/]+)$/, (m) => ["pipelines", (root) => pipelineDetail(root, decodeURIComponent(m[1]))]],
  [/^#\/modules$/, () => ["modules", modulesView]],
  [/^#\/deploy$/, () => ["deploy", (root) => deployView(root, null)]],
  [/^#\/deploy\/([^/]+)$/, (m) => ["deploy", (root) => deployView(root, decodeURIComponent(m[1]))]],
  [/^#\/cluster$/, () => ["cluster", clusterView]],
];

let cleanup = null;

function route() {
  const hash = location.hash || "#/";
  const root = document.getElementById("view");
  if (cleanup) cleanup();
  cleanup = null;
  root.replaceChildren();
  for (const [pattern, make] of routes) {
    const match = pattern.exec(hash);
    if (!match) continue;
    const [nav, mount] = make(match);
    document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
    cleanup = mount(root) || null;
    return;
  }
  root.textContent = "No such page.";
}

const tokenInput = document.getElementById("token");
tokenInput.value = token();
tokenInput.addEventListener("change", () => setToken(tokenInput.value));
window.addEventListener("hashchange", route);
route();
