// The catalog: prompts with search and filters; a prompt's versions (metrics, lineage), aliases and their history;
// alias moves and tags for admins (hidden from other roles, and refused by the server anyway); each alias's rollout.
import { call, listAll, path } from "./api.js";
import { h, mount, num, shortName, toast, when } from "./dom.js";
import { rolloutsCard } from "./live.js";

const chips = (items, cls = "") => (items || []).map((t) => h("span", { class: `chip ${cls}` }, t));

export async function catalogView() {
  const backbones = await listAll("/v1/backbones", "backbones");
  const search = h("input", { id: "search", type: "search", placeholder: "search name or description" });
  const tag = h("input", { id: "filter-tag", placeholder: "tag" });
  const label = h("input", { id: "filter-label", placeholder: "label" });
  const backbone = h("select", { id: "filter-backbone" }, h("option", { value: "" }, "any backbone"),
    backbones.map((b) => h("option", { value: b.name }, shortName(b.name))));
  const body = h("tbody", { id: "prompts" });
  let prompts = [];

  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = prompts.filter((p) => !q || p.name.toLowerCase().includes(q)
      || (p.task?.description || "").toLowerCase().includes(q));
    mount(body, shown.length ? shown.map((p) => h("tr", { class: "prompt-row", "data-name": p.name },
      h("td", {}, h("a", { href: `#/prompts/${encodeURIComponent(shortName(p.name))}` }, shortName(p.name)),
        h("div", { class: "muted small" }, p.task?.description || "")),
      h("td", {}, (p.task?.labels || []).join(", ")),
      h("td", {}, chips(Object.entries(p.aliases || {}).map(([a, v]) => `${a} → v${v}`), "alias")),
      h("td", {}, chips(p.tags)),
      h("td", {}, p.latestVersion || "0"),
      h("td", { class: "small" }, p.owner || ""),
      h("td", { class: "small" }, when(p.updateTime))))
      : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No prompts match.")));
  };
  const load = async () => {
    prompts = await listAll("/v1/prompts", "prompts", { tag: tag.value.trim(), label: label.value.trim(),
      backbone: backbone.value });
    draw();
  };
  search.addEventListener("input", draw);
  for (const el of [tag, label]) el.addEventListener("change", load);
  backbone.addEventListener("change", load);
  await load();
  return h("section", {}, h("h1", {}, "Prompts"),
    h("div", { class: "filters" }, search, tag, label, backbone),
    h("table", {}, h("thead", {}, h("tr", {}, ["prompt", "labels", "aliases", "tags", "latest", "owner", "updated"]
      .map((c) => h("th", {}, c)))), body),
    h("h2", {}, "Backbones"),
    h("table", {}, h("tbody", {}, backbones.map((b) => h("tr", {}, h("td", {}, shortName(b.name)),
      h("td", { class: "small model", title: b.model }, modelName(b.model)),
      h("td", {}, (b.architecture || "").replace("ARCHITECTURE_", "").toLowerCase()),
      h("td", {}, `hidden ${b.hiddenSize}`), h("td", {}, `${b.replicas || 0} replica(s)`))))));
}

/** A model for the table: a hub id as it is, a local path by its last two parts (the whole path on hover). */
function modelName(model) {
  const parts = (model || "").split("/").filter(Boolean);
  return model.startsWith("/") && parts.length > 2 ? `…/${parts.slice(-2).join("/")}` : model;
}

function tagEditor(ctx, current, save) {
  if (!ctx.can("admin")) return chips(current);
  const input = h("input", { class: "tags-input", value: (current || []).join(", "), size: 18 });
  const button = h("button", { class: "secondary tags-save", type: "button", onclick: async () => {
    try {
      await save(input.value.split(",").map((t) => t.trim()).filter(Boolean));
      toast("Tags saved");
    } catch (e) { toast(e.message, true); }
  } }, "Save tags");
  return h("span", { class: "row" }, input, button);
}

export async function promptView(ctx, id) {
  const root = h("section", {});
  const draw = async () => {
    const [prompt, versions, events] = await Promise.all([
      call("GET", path`/v1/prompts/${id}`),
      listAll(path`/v1/prompts/${id}/versions`, "versions"),
      listAll(path`/v1/prompts/${id}/aliasEvents`, "events"),
    ]);
    const rollouts = await rolloutsCard(id, prompt.aliases);
    const task = prompt.task || {};
    const aliasName = h("input", { id: "alias-name", placeholder: "alias, e.g. prod", value: "prod", size: 10 });
    const aliasVersion = h("select", { id: "alias-version" },
      versions.map((v) => h("option", { value: v.version }, `v${v.version}`)));
    const aliasForm = ctx.can("admin") && versions.length ? h("form", { id: "alias-form", class: "row", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await call("POST", path`/v1/prompts/${id}:setAlias`,
          { alias: aliasName.value.trim(), version: aliasVersion.value });
        toast(`${aliasName.value} → v${aliasVersion.value}`);
        await draw();
      } catch (e) { toast(e.message, true); }
    } }, "Move alias", aliasName, "to", aliasVersion, h("button", { type: "submit", id: "alias-move" }, "Move"))
      : null;
    mount(root,
      h("h1", {}, `prompts/${id}`),
      h("div", { class: "card" }, h("dl", { class: "kv" },
        h("dt", {}, "labels"), h("dd", {}, (task.labels || []).join(", ")),
        h("dt", {}, "description"), h("dd", {}, task.description || ""),
        h("dt", {}, "aliases"), h("dd", { id: "aliases" }, chips(Object.entries(prompt.aliases || {})
          .map(([a, v]) => `${a} → v${v}`), "alias")),
        h("dt", {}, "tags"), h("dd", {}, tagEditor(ctx, prompt.tags, (tags) =>
          call("PATCH", path`/v1/prompts/${id}`, { tags }, { updateMask: "tags" }))),
        h("dt", {}, "owner"), h("dd", {}, prompt.owner || ""),
        h("dt", {}, "created"), h("dd", {}, when(prompt.createTime)))),
      aliasForm && h("div", { class: "card" }, aliasForm),
      rollouts,
      h("h2", {}, "Versions"),
      h("table", { id: "versions" }, h("thead", {}, h("tr", {}, ["version", "backbone", "metrics", "lineage", "aliases",
        "tags", "created"].map((c) => h("th", {}, c)))),
      h("tbody", {}, versions.map((v) => h("tr", { class: "version-row", "data-version": v.version },
        h("td", {}, h("a", { class: "version-link", href: `#/prompts/${encodeURIComponent(id)}/versions/${v.version}` },
          `v${v.version}`), h("div", { class: "muted small" },
          `${v.kind === "PROMPT_KIND_DEEP" ? "deep" : "input"} · ${(v.shape || []).join(" × ")}`)),
        h("td", {}, shortName(v.backbone)),
        h("td", { class: "small" }, Object.entries(v.metrics || {}).sort().map(([k, x]) => h("div", {}, `${k} ${num(x)}`))),
        h("td", { class: "small" },
          v.lineage?.job ? h("div", {}, "job ", h("a", { href: `#/jobs/${encodeURIComponent(shortName(v.lineage.job))}` }, shortName(v.lineage.job))) : null,
          v.lineage?.importedFrom ? h("div", {}, `imported from ${v.lineage.importedFrom}`) : null,
          v.lineage?.data ? h("div", {}, `data ${v.lineage.data}`) : null,
          v.lineage?.init ? h("div", {}, `init ${v.lineage.init}`) : null,
          v.lineage?.principal ? h("div", {}, `by ${v.lineage.principal}`) : null),
        h("td", {}, chips(v.aliases, "alias")),
        h("td", {}, tagEditor(ctx, v.tags, (tags) => call("PATCH",
          path`/v1/prompts/${id}/versions/${v.version}`, { tags }, { updateMask: "tags" }))),
        h("td", { class: "small" }, when(v.createTime)))))),
      h("h2", {}, "Alias history"),
      h("table", { id: "alias-history" }, h("tbody", {}, events.length ? events.map((e) => h("tr", {},
        h("td", {}, e.alias), h("td", { class: "small" }, e.action || "move"),
        h("td", {}, e.fromVersion ? `v${e.fromVersion}` : "(new)"), h("td", {}, "→"),
        h("td", {}, e.toVersion ? `v${e.toVersion}` : "(deleted)"), h("td", { class: "small" }, e.principal || ""),
        h("td", { class: "small" }, when(e.time)))) : h("tr", {}, h("td", { class: "muted" }, "No moves yet.")))),
    );
  };
  await draw();
  return root;
}
