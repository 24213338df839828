// The playground: classify texts with one or several prompts in one request (mixed tasks; ensembles of a prompt's
// versions), and compare two versions of a prompt on the same texts.
import { call, listAll, path } from "./api.js";
import { h, mount, scoreBars, shortName, toast } from "./dom.js";

const texts = (area) => area.value.split("\n").map((t) => t.trim()).filter(Boolean);

function pickers(prompts) {
  return prompts.map((p) => {
    const id = shortName(p.name);
    const refs = ["latest", ...Object.keys(p.aliases || {}).filter((a) => a !== "latest")];
    return h("div", { class: "row picker", "data-prompt": id },
      h("label", {}, h("input", { type: "checkbox", class: "pick", value: id, "data-prompt": id }), ` ${id}`),
      h("select", { class: "ref" }, refs.map((r) => h("option", { value: r === "latest" ? id : `${id}@${r}` },
        r === "latest" ? `latest (v${p.latestVersion})` : `@${r} (v${p.aliases[r]})`))),
      h("input", { class: "ensemble", placeholder: "ensemble with, e.g. 1, 2", size: 26 }),
      h("span", { class: "muted small" }, (p.task?.labels || []).join(" / ")));
  });
}

export async function playgroundView() {
  const prompts = (await listAll("/v1/prompts", "prompts")).filter((p) => Number(p.latestVersion || 0) > 0);
  const area = h("textarea", { id: "texts", placeholder: "one text per line" }, "what a great day\nthis is awful");
  const picks = h("div", { id: "pickers" }, prompts.length ? pickers(prompts) : h("p", { class: "muted" }, "No trained prompts yet."));
  const results = h("div", { id: "results" });

  const classify = async () => {
    const chosen = [...picks.querySelectorAll(".picker")].filter((el) => el.querySelector(".pick").checked)
      .map((el) => {
        const id = el.dataset.prompt;
        const ensemble = el.querySelector(".ensemble").value.split(",").map((s) => s.trim()).filter(Boolean)
          .map((v) => (/^\d+$/.test(v) ? `${id}/versions/${v}` : v));
        return { id, ref: el.querySelector(".ref").value, ensemble };
      });
    const lines = texts(area);
    if (!chosen.length || !lines.length) return toast("Pick a prompt and type a text", true);
    const rows = lines.flatMap((text) => chosen.map((c) => ({ prompt: c.ref, text, ensemble: c.ensemble })));
    const t0 = performance.now();
    try {
      const out = await call("POST", "/v1/prompts:classify", { rows });
      const ms = performance.now() - t0;
      const res = out.results || [];
      mount(results, h("p", { class: "muted small" }, `${rows.length} rows in one request, ${ms.toFixed(0)} ms`),
        h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "text"), chosen.map((c) => h("th", {}, c.ref,
          c.ensemble.length ? ` + ${c.ensemble.length}` : "")))),
        h("tbody", {}, lines.map((text, i) => h("tr", { class: "result-row", "data-text": text }, h("td", {}, text),
          chosen.map((c, j) => {
            const r = res[i * chosen.length + j];
            return h("td", { class: "result", "data-prompt": c.id, "data-label": r.label, "data-version": r.version },
              h("strong", {}, r.label), h("div", { class: "muted small" }, (r.versions?.length ? r.versions : [r.version])
                .map(shortName).join(" + ")), scoreBars(r));
          }))))));
    } catch (e) { mount(results, h("p", { class: "error" }, e.message)); }
  };

  const cmpPrompt = h("select", { id: "compare-prompt" }, prompts.map((p) => h("option", { value: shortName(p.name) },
    shortName(p.name))));
  const verA = h("select", { id: "compare-a" });
  const verB = h("select", { id: "compare-b" });
  const cmpOut = h("div", { id: "compare-results" });
  const loadVersions = async () => {
    if (!cmpPrompt.value) return;
    const versions = await listAll(path`/v1/prompts/${cmpPrompt.value}/versions`, "versions");
    for (const [sel, k] of [[verA, 1], [verB, 0]]) {
      mount(sel, versions.map((v) => h("option", { value: v.name }, `v${v.version}`)));
      sel.selectedIndex = Math.min(k, versions.length - 1);
    }
  };
  cmpPrompt.addEventListener("change", loadVersions);
  const compare = async () => {
    const lines = texts(area);
    if (!verA.value || !verB.value || !lines.length) return toast("Pick two versions and type a text", true);
    try {
      const rows = lines.flatMap((text) => [{ prompt: verA.value, text }, { prompt: verB.value, text }]);
      const res = (await call("POST", "/v1/prompts:classify", { rows })).results || [];
      let agree = 0;
      const body = lines.map((text, i) => {
        const [a, b] = [res[2 * i], res[2 * i + 1]];
        if (a.label === b.label) agree += 1;
        return h("tr", { class: "compare-row" }, h("td", {}, text), h("td", {}, h("strong", {}, a.label), scoreBars(a)),
          h("td", {}, h("strong", {}, b.label), scoreBars(b)), h("td", {}, a.label === b.label ? "same" : "differs"));
      });
      mount(cmpOut, h("p", { id: "agreement" }, `agree on ${agree} of ${lines.length} texts`),
        h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "text"), h("th", {}, `A: v${shortName(verA.value)}`),
          h("th", {}, `B: v${shortName(verB.value)}`), h("th", {}, ""))), h("tbody", {}, body)));
    } catch (e) { mount(cmpOut, h("p", { class: "error" }, e.message)); }
  };
  await loadVersions();
  return h("section", {}, h("h1", {}, "Playground"),
    h("div", { class: "card" }, h("p", { class: "muted small" }, "Texts, one per line:"), area),
    h("div", { class: "card" }, h("p", { class: "muted small" },
      "Prompts (several: one mixed-task request; ensemble: average with more versions of that prompt):"), picks,
    h("p", {}, h("button", { id: "classify", type: "button", onclick: classify }, "Classify"))),
    results,
    h("h2", {}, "Compare two versions"),
    h("div", { class: "card row" }, cmpPrompt, "A", verA, "B", verB,
      h("button", { id: "compare", type: "button", onclick: compare }, "Compare")), cmpOut,
    h("p", { class: "muted small" }, `Scores are the same as the gRPC API's: this page calls POST /v1/prompts:classify.`));
}
