// Live evaluation in the console: a version's accuracy from recorded outcomes (all time and the recent window, with
// their 95% intervals and the confusion table), and each alias's rollout (shadow, canary, policy and the evidence
// gathered on them), read through the REST routes of GetPromptVersion and GetRollout.
import { call, path } from "./api.js";
import { h, num, shortName, when } from "./dom.js";

const count = (x) => Number(x || 0);

function hours(seconds) {
  const s = Number(seconds || 0);
  if (s >= 3600 && s % 3600 === 0) return `${s / 3600} h`;
  if (s >= 60 && s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

/** One span's accuracy as a table row: served, labelled, accuracy and its interval. */
function accuracyRow(id, what, acc = {}) {
  const labelled = count(acc.labelled);
  return h("tr", { id, "data-served": count(acc.served), "data-labelled": labelled, "data-correct": count(acc.correct),
    "data-accuracy": String(acc.accuracy ?? 0), "data-low": String(acc.low ?? 0), "data-high": String(acc.high ?? 0) },
  h("th", {}, what), h("td", {}, count(acc.served)), h("td", {}, labelled),
  h("td", {}, labelled ? num(acc.accuracy, 4) : "—"),
  h("td", {}, labelled ? `${num(acc.low, 4)} – ${num(acc.high, 4)}` : "no outcomes yet"));
}

/** Labelled rows by (true, predicted) label: a row per true label, a column per predicted one. */
function confusionTable(acc) {
  const cells = acc?.confusion || [];
  const labels = [...new Set(cells.flatMap((c) => [c.label, c.predicted]))].sort();
  const at = new Map(cells.map((c) => [`${c.label}\u0000${c.predicted}`, count(c.count)]));
  return h("table", { id: "confusion" },
    h("thead", {}, h("tr", {}, h("th", {}, "true \\ predicted"), labels.map((l) => h("th", {}, l)))),
    h("tbody", {}, labels.map((t) => h("tr", { "data-label": t }, h("th", {}, t), labels.map((p) =>
      h("td", { class: t === p ? "diag" : "", "data-predicted": p }, at.get(`${t}\u0000${p}`) || 0))))));
}

/** The live accuracy card of a version (GetPromptVersion's `live`). */
export function liveCard(live) {
  const all = live?.allTime || {};
  return h("div", { class: "card", id: "live" }, h("h2", {}, "Live accuracy"),
    h("table", { id: "live-accuracy" },
      h("thead", {}, h("tr", {}, ["", "served", "with outcomes", "accuracy", "95% interval"].map((c) => h("th", {}, c)))),
      h("tbody", {}, accuracyRow("live-all-time", "all time", all),
        accuracyRow("live-recent", `last ${hours(live?.windowSeconds)}`, live?.recent))),
    count(all.labelled) > 0 ? [h("h3", {}, "Confusion (all time)"), confusionTable(all)]
      : h("p", { class: "muted" }, "No outcomes recorded yet: send true labels back with the result ids."));
}

/** A version's own page: its fields and live accuracy. */
export async function versionView(ctx, id, n) {
  const v = await call("GET", path`/v1/prompts/${id}/versions/${n}`);
  return h("section", {}, h("h1", {}, h("a", { href: `#/prompts/${encodeURIComponent(id)}` }, `prompts/${id}`),
    ` / versions/${v.version}`),
  h("div", { class: "card" }, h("dl", { class: "kv" },
    h("dt", {}, "backbone"), h("dd", {}, shortName(v.backbone)),
    h("dt", {}, "kind"), h("dd", {}, v.kind === "PROMPT_KIND_DEEP" ? "deep" : "input"),
    h("dt", {}, "shape"), h("dd", {}, (v.shape || []).join(" × ")),
    h("dt", {}, "aliases"), h("dd", {}, (v.aliases || []).join(", ")),
    h("dt", {}, "metrics"), h("dd", {}, Object.entries(v.metrics || {}).sort().map(([k, x]) => `${k} ${num(x)}`).join(", ")),
    h("dt", {}, "created"), h("dd", {}, when(v.createTime)))),
  liveCard(v.live));
}

function evidenceLine(cls, what, version, fraction, cmp) {
  if (!version) return h("div", { class: `${cls} muted` }, `${what}: none`);
  const clears = Boolean(cmp?.clears);
  return h("div", { class: cls, "data-version": version, "data-method": cmp?.method || "none",
    "data-rows": count(cmp?.rows), "data-clears": String(clears) },
  h("strong", {}, `${what} `), `v${shortName(version)} on ${num(fraction, 3)} of rows`,
  h("div", { class: "small" }, cmp?.summary || "no evidence yet"),
  h("span", { class: `chip ${clears ? "ok" : ""}` }, clears ? "clears the margin" : "does not clear yet"));
}

/** The rollout of each alias but `latest` (which every publish moves): shadow, canary, policy and evidence. */
export async function rolloutsCard(id, aliases) {
  const names = Object.keys(aliases || {}).filter((a) => a !== "latest").sort();
  const rollouts = await Promise.all(names.map((a) => call("GET", path`/v1/prompts/${id}/aliases/${a}/rollout`)));
  return h("div", { class: "card", id: "rollouts" }, h("h2", {}, "Rollouts"),
    names.length ? names.map((a, i) => {
      const r = rollouts[i];
      const pol = r.policy || {};
      return h("div", { class: "rollout", "data-alias": a },
        h("h3", {}, `${a} → v${shortName(r.version)}`),
        evidenceLine("shadow", "shadow", r.shadowVersion, r.shadowFraction ?? 1, r.shadowEvidence),
        evidenceLine("canary", "canary", r.canaryVersion, r.canaryFraction ?? 0, r.canaryEvidence),
        h("div", { class: "policy small" }, `policy: ${pol.auto ? "auto" : "manual"}, margin ${num(pol.margin ?? 0)}, `
          + `min rows ${count(pol.minRows)}`));
    }) : h("p", { class: "muted" }, "No aliases besides latest."));
}
