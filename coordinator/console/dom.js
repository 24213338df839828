// Small helpers to build the console's DOM without a framework.

/** h("a", {href: "#/x", class: "chip"}, "text", child, ...): an element; `on*` attributes become listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = tag === "svg" || attrs.svg ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  return h(tag, { ...attrs, svg: true }, ...children);
}

export function mount(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return el;
}

export function toast(message, isError = false) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = isError ? "error" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, isError ? 8000 : 3000);
}

export function when(ts) {
  return ts ? new Date(ts).toLocaleString() : "";
}

/** A number for people: counts as integers (180, not 180.000), small values to 3 significant digits
 * (0.00025, not 0.000), others to `digits` decimals. */
export function num(x, digits = 3) {
  if (x === undefined || x === null) return "";
  const n = Number(x);
  if (Number.isInteger(n)) return String(n);
  if (Math.abs(n) < 0.01) return String(Number(n.toPrecision(3)));
  return n.toFixed(digits);
}

export const shortName = (name) => (name || "").split("/").pop();

/** Score bars of one classification result; `data-score` keeps the exact value. */
export function scoreBars(result) {
  return h("div", {},
    (result.scores || []).map((s) => h("div", { class: `bar${s.label === result.label ? " top" : ""}` },
      h("span", { class: "fill", style: { width: `${Math.round((s.score || 0) * 120)}px` } }),
      h("span", { class: "score", "data-label": s.label, "data-score": String(s.score ?? 0) },
        `${s.label} ${num(s.score)}`))));
}
