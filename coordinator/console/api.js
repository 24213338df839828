// The REST API from the browser: JSON calls, Server-Sent Event streams, and the signed-in token, which is kept in
// sessionStorage only (gone when the tab closes) and sent as `Authorization: Bearer`.
const KEY = "promptbank.token";

export const token = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (t) => (t ? sessionStorage.setItem(KEY, t) : sessionStorage.removeItem(KEY)),
};

/** A google.rpc.Status from the server: `code` is the gRPC code (7 PERMISSION_DENIED, 16 UNAUTHENTICATED, ...). */
export class ApiError extends Error {
  constructor(httpStatus, code, message) {
    super(message);
    this.httpStatus = httpStatus;
    this.code = code;
  }
}

/** One path segment: percent-encoded, so a name taken from a link (the location hash) can add no segment, start no
 * query or fragment, and climb nowhere; "", "." and ".." are refused, as browsers resolve them even encoded. */
export function segment(value) {
  const s = String(value ?? "");
  if (s === "" || s === "." || s === "..") throw new ApiError(0, 3, `not a valid name: ${JSON.stringify(s)}`);
  return encodeURIComponent(s);
}

/** An API path from a template whose every value is one segment: path`/v1/jobs/${id}:cancel`. */
export function path(strings, ...values) {
  return strings.reduce((out, text, i) => out + text + (i < values.length ? segment(values[i]) : ""), "");
}

function headers(json) {
  const h = {};
  const t = token.get();
  if (t) h.Authorization = `Bearer ${t}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function url(path, query) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    for (const item of Array.isArray(v) ? v : [v]) {
      if (item !== undefined && item !== null && item !== "") u.searchParams.append(k, item);
    }
  }
  return u;
}

async function failure(res) {
  const data = await res.json().catch(() => ({}));
  return new ApiError(res.status, data.code ?? 2, data.message || res.statusText);
}

/** One RPC: `call("GET", "/v1/prompts", undefined, {pageSize: 50})`. */
export async function call(method, path, body, query) {
  const res = await fetch(url(path, query), {
    method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res);
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

/** Every page of a List RPC: the items under `key`. */
export async function listAll(path, key, query = {}, most = 2000) {
  const out = [];
  let pageToken = "";
  do {
    const page = await call("GET", path, undefined, { ...query, pageSize: 200, pageToken });
    out.push(...(page[key] || []));
    pageToken = page.nextPageToken || "";
  } while (pageToken && out.length < most);
  return out;
}

/** A server stream as Server-Sent Events: `onEvent(message)` per `data:`; resolves at `event: end`. */
export async function stream(method, path, { body, onEvent, signal } = {}) {
  const res = await fetch(url(path), {
    method, signal, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const raw = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = "message";
      let data = "";
      for (const line of raw.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      const obj = data ? JSON.parse(data) : {};
      if (event === "error") throw new ApiError(0, obj.code, obj.message);
      if (event === "end") return;
      onEvent(obj);
    }
  }
}

/** The token's role, found from the least-privileged listing it may read (there is no "who am I" RPC). */
export async function whoami() {
  const probes = [["admin", "/v1/tokens"], ["trainer", "/v1/jobs"], ["reader", "/v1/prompts"]];
  for (const [role, path] of probes) {
    try {
      await call("GET", path, undefined, { pageSize: 1 });
      return role;
    } catch (e) {
      if (e.code === 16) return "";  // UNAUTHENTICATED: no token, or a bad one
      if (e.code !== 7) throw e;  // anything but PERMISSION_DENIED
    }
  }
  return "";
}
