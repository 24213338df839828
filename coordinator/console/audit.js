// The audit log (admins): who called which write RPC on what, and when, newest first, with the API's filters.
// Pages go back in time: "Older" asks for the page below the last one shown.
import { call } from "./api.js";
import { h, mount, toast, when } from "./dom.js";

const PAGE = 100;

/** A datetime-local input's value (local time) as the API's UTC timestamp; "" when empty. */
const utc = (value) => (value ? new Date(value).toISOString() : "");

export async function auditView() {
  const principal = h("input", { id: "audit-principal", placeholder: "principal" });
  const method = h("input", { id: "audit-method", placeholder: "method, e.g. DeletePrompt" });
  const resource = h("input", { id: "audit-resource", placeholder: "resource, e.g. prompts/x" });
  const after = h("input", { id: "audit-after", type: "datetime-local", title: "at or after" });
  const before = h("input", { id: "audit-before", type: "datetime-local", title: "before" });
  const body = h("tbody", { id: "audit-events" });
  const older = h("button", { id: "audit-older", class: "secondary", type: "button", hidden: true }, "Older");
  let query = {};
  let next = "";

  const row = (e) => h("tr", { class: "audit-row", "data-name": e.name },
    h("td", { class: "small", title: e.time || "" }, when(e.time)), h("td", {}, e.principal || ""),
    h("td", {}, e.method || ""), h("td", {}, e.resource || ""));
  const page = async (append) => {
    const got = await call("GET", "/v1/auditEvents", undefined, { ...query, pageSize: PAGE, pageToken: next });
    const rows = (got.events || []).map(row);
    if (append) body.append(...rows);
    else mount(body, rows.length ? rows : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No events match.")));
    next = got.nextPageToken || "";
    older.hidden = !next;
  };
  const search = async (ev) => {
    ev?.preventDefault();
    query = { principal: principal.value.trim(), method: method.value.trim(), resource: resource.value.trim(),
      after: utc(after.value), before: utc(before.value) };
    next = "";
    await page(false);
  };
  const shout = (e) => toast(e.message, true);
  older.addEventListener("click", () => page(true).catch(shout));
  const form = h("form", { id: "audit-filters", class: "filters", onsubmit: (ev) => search(ev).catch(shout) },
    principal, method, resource, after, before, h("button", { type: "submit" }, "Filter"));
  await search();
  return h("section", {}, h("h1", {}, "Audit log"),
    h("p", { class: "muted" }, "Every successful write, newest first. The server keeps them for its retention ",
      "(--audit-retention-days, --audit-max-rows)."), form,
    h("table", {}, h("thead", {}, h("tr", {}, ["time", "principal", "method", "resource"].map((c) => h("th", {}, c)))),
      body), h("p", {}, older));
}
