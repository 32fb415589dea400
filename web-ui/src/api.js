// Talking to the engine: JSON requests with the bearer token, uploads with
// progress, and the live tap as a stream of server-sent events.

const TOKEN_KEY = "sluice.token";

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  localStorage.setItem(TOKEN_KEY, value.trim());
}

/** An API error with the server's message (and positioned `errors`, if any). */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  if (token()) h.Authorization = `Bearer ${token()}`;
  return h;
}

export async function request(method, path, body, contentType) {
  const init = { method, headers: headers(contentType ? { "Content-Type": contentType } : {}) };
  if (body !== undefined) init.body = body;
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = { error: text }; }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const get = (path) => request("GET", path);
export const post = (path, json) => request("POST", path, json === undefined ? undefined : JSON.stringify(json), "application/json");
export const put = (path, body, type) => request("PUT", path, body, type);
export const del = (path) => request("DELETE", path);

/** Uploads a module, reporting progress (0–1) as the bytes go out. */
export function uploadModule(name, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", `/api/modules/${encodeURIComponent(name)}`);
    if (token()) xhr.setRequestHeader("Authorization", `Bearer ${token()}`);
    xhr.setRequestHeader("Content-Type", "application/wasm");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = { error: xhr.responseText }; }
      if (xhr.status >= 200 && xhr.status < 300) resolve({ created: xhr.status === 201, version: body });
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { error: "the engine cannot be reached" }));
    xhr.send(file);
  });
}

/**
 * Streams the live tap of a stage; calls `onRecord` per record. Uses fetch
 * (not EventSource) so the token can go in a header. Returns a stop function.
 */
export function tap(pipeline, stage, side, onRecord, onEnd) {
  const controller = new AbortController();
  const params = new URLSearchParams({ stage, limit: "1000" });
  if (side) params.set("side", side);
  (async () => {
    try {
      const response = await fetch(`/api/pipelines/${encodeURIComponent(pipeline)}/tap?${params}`, {
        headers: headers(), signal: controller.signal,
      });
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (event === "record") onRecord(JSON.parse(data));
          if (event === "skipped") onRecord({ skipped: Number(data) });
        }
      }
      onEnd(null);
    } catch (error) {
      onEnd(error.name === "AbortError" ? null : error);
    }
  })();
  return () => controller.abort();
}
