// Jobs: the list with their states, and a job page whose curves grow live from WatchTrainJob's event stream.
import { call, listAll, path, stream } from "./api.js";
import { lineChart } from "./chart.js";
import { h, mount, num, shortName, toast, when } from "./dom.js";

const STATES = ["", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const ENDED = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

export async function jobsView() {
  const state = h("select", { id: "filter-state" }, STATES.map((s) => h("option", { value: s }, s || "any state")));
  const body = h("tbody", { id: "jobs" });
  const load = async () => {
    const jobs = await listAll("/v1/jobs", "jobs", { state: state.value }, 500);
    mount(body, jobs.length ? jobs.map((j) => h("tr", { class: "job-row", "data-name": j.name },
      h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(shortName(j.name))}` }, shortName(j.name))),
      h("td", {}, shortName(j.prompt)),
      h("td", { class: `state ${j.state}` }, j.state),
      h("td", {}, `${j.step || 0} / ${j.totalSteps || "?"}`),
      h("td", {}, j.resultVersion ? h("a", { href: `#/prompts/${encodeURIComponent(shortName(j.prompt))}` }, j.resultVersion) : j.error || ""),
      h("td", { class: "small" }, j.principal || ""),
      h("td", { class: "small" }, when(j.createTime))))
      : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No jobs.")));
  };
  state.addEventListener("change", load);
  await load();
  return h("section", {}, h("h1", {}, "Train jobs"), h("div", { class: "filters" }, state,
    h("button", { class: "secondary", type: "button", onclick: load }, "Refresh")),
  h("table", {}, h("thead", {}, h("tr", {}, ["job", "prompt", "state", "steps", "result", "by", "created"]
    .map((c) => h("th", {}, c)))), body));
}

export async function jobView(ctx, id) {
  const name = `jobs/${id}`;  // shown only; every URL below takes `id` as one encoded segment
  const jobPath = path`/v1/jobs/${id}`;
  let job = await call("GET", jobPath);
  const loss = [];
  const evalLoss = [];
  const accuracy = [];
  const info = h("div", { class: "card", id: "job-info" });
  const charts = h("div", { class: "grid2", id: "charts" });
  const log = h("tbody", { id: "job-log" });

  const cancel = ctx.can("trainer") ? h("button", { id: "cancel-job", class: "danger", type: "button",
    onclick: async () => {
      try {
        job = await call("POST", `${jobPath}:cancel`, {});
        drawInfo();
        toast("Cancellation requested");
      } catch (e) { toast(e.message, true); }
    } }, "Cancel job") : null;
  const drawInfo = () => {
    mount(info, h("dl", { class: "kv" },
      h("dt", {}, "prompt"), h("dd", {}, h("a", { href: `#/prompts/${encodeURIComponent(shortName(job.prompt))}` }, shortName(job.prompt))),
      h("dt", {}, "state"), h("dd", { id: "job-state", class: `state ${job.state}` }, job.state),
      h("dt", {}, "steps"), h("dd", { id: "job-steps" }, `${job.step || 0} / ${job.totalSteps || "?"}`),
      h("dt", {}, "backbone"), h("dd", {}, shortName(job.backbone)),
      h("dt", {}, "result"), h("dd", { id: "job-result" }, job.resultVersion
        ? h("a", { href: `#/prompts/${encodeURIComponent(shortName(job.prompt))}` }, job.resultVersion) : job.error || ""),
      h("dt", {}, "metrics"), h("dd", {}, Object.entries(job.metrics || {}).sort().map(([k, v]) => `${k} ${num(v)}`).join(", ")),
      h("dt", {}, "by"), h("dd", {}, job.principal || ""),
      h("dt", {}, "created"), h("dd", {}, when(job.createTime))));
    if (cancel) cancel.hidden = ENDED.has(job.state);  // one button, kept across redraws
  };
  let queued = false;
  const drawCharts = () => {
    queued = false;
    mount(charts,
      lineChart("Loss", [{ name: "loss", points: loss }, { name: "eval loss", points: evalLoss }]),
      lineChart("Eval accuracy", [{ name: "eval accuracy", points: accuracy }], { yRange: [0, 1] }));
  };
  const redraw = () => {
    if (!queued) { queued = true; requestAnimationFrame(drawCharts); }
  };
  drawInfo();
  drawCharts();
  const follow = async () => {
    try {
      await stream("GET", `${jobPath}:watch`, { signal: ctx.abort.signal, onEvent: (ev) => {
        const step = Number(ev.step || 0);
        if (ev.kind === "PROGRESS" && ev.loss !== undefined) loss.push([step, Number(ev.loss)]);
        if (ev.kind === "EVAL" && ev.metrics) {
          if (ev.metrics.eval_loss !== undefined) evalLoss.push([step, ev.metrics.eval_loss]);
          if (ev.metrics.eval_accuracy !== undefined) accuracy.push([step, ev.metrics.eval_accuracy]);
        }
        if (ev.kind === "LOG" || ev.message) {
          log.prepend(h("tr", {}, h("td", { class: "small" }, when(ev.time)), h("td", {}, ev.message || ev.kind)));
        }
        job = { ...job, state: ev.state || job.state, step: ev.step || job.step, totalSteps: ev.totalSteps || job.totalSteps };
        drawInfo();
        redraw();
      } });
      job = await call("GET", jobPath);
      drawInfo();
    } catch (e) {
      if (e.name !== "AbortError") toast(e.message, true);
    }
  };
  follow();
  return h("section", {}, h("h1", {}, name), info, cancel && h("p", {}, cancel), charts, h("h2", {}, "Events"), h("table", {}, log));
}
