// Line charts as inline SVG: series of (x, y) points on shared axes, redrawn whole on each update.
import { h, num, svg } from "./dom.js";

const COLORS = ["#2f6fde", "#d64545", "#1f9d55", "#c98a00"];

function ticks(lo, hi, n = 4) {
  if (hi === lo) return [lo];
  return Array.from({ length: n + 1 }, (_, i) => lo + ((hi - lo) * i) / n);
}

/** series: [{name, points: [[x, y], ...]}]; `yRange` fixes the y axis; returns a <figure> with the SVG and a legend. */
export function lineChart(title, series, { width = 560, height = 220, xLabel = "step", yRange = null } = {}) {
  const pad = { l: 52, r: 12, t: 10, b: 30 };
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  let [y0, y1] = yRange || (ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1]);
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad.l + ((x - x0) / (x1 - x0 || 1)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  const chart = svg("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": title });
  for (const t of ticks(y0, y1)) {
    chart.append(svg("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: Y(t), y2: Y(t) }),
      svg("text", { x: pad.l - 6, y: Y(t) + 4, "text-anchor": "end" }, num(Number(t.toPrecision(3)))));
  }
  for (const t of ticks(x0, x1)) {
    chart.append(svg("text", { x: X(t), y: height - pad.b + 16, "text-anchor": "middle" }, Math.round(t)));
  }
  chart.append(svg("line", { class: "axis", x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b }),
    svg("line", { class: "axis", x1: pad.l, x2: pad.l, y1: pad.t, y2: height - pad.b }),
    svg("text", { x: width - pad.r, y: height - 2, "text-anchor": "end" }, xLabel));
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
    const g = svg("g", { class: "series", "data-series": s.name, "data-points": s.points.length });
    if (d) g.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    for (const p of s.points.length <= 60 ? s.points : []) {
      g.append(svg("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: color }));
    }
    chart.append(g);
  });
  const legend = h("div", { class: "legend" }, series.map((s, i) =>
    h("span", {}, h("i", { style: { background: COLORS[i % COLORS.length] } }), `${s.name} (${s.points.length})`)));
  return h("figure", { class: "card" }, h("strong", {}, title), chart, legend);
}
