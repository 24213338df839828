// The console's shell: sign-in, the role it gives, and a hash router over the views.
import { token, whoami } from "./api.js";
import { auditView } from "./audit.js";
import { catalogView, promptView } from "./catalog.js";
import { h, mount, toast } from "./dom.js";
import { jobView, jobsView } from "./jobs.js";
import { versionView } from "./live.js";
import { playgroundView } from "./playground.js";

const ROLES = ["reader", "trainer", "admin"];
const ctx = {
  role: "",
  can: (need) => ROLES.indexOf(ctx.role) >= ROLES.indexOf(need) && ctx.role !== "",
  abort: new AbortController(),  // ends the current view's streams when the view changes
};

const routes = [
  [/^#\/catalog$/, () => catalogView(ctx)],
  [/^#\/prompts\/([^/]+)$/, (m) => promptView(ctx, decodeURIComponent(m[1]))],
  [/^#\/prompts\/([^/]+)\/versions\/(\d+)$/, (m) => versionView(ctx, decodeURIComponent(m[1]), m[2])],
  [/^#\/jobs$/, () => jobsView(ctx)],
  [/^#\/jobs\/([^/]+)$/, (m) => jobView(ctx, decodeURIComponent(m[1]))],
  [/^#\/playground$/, () => playgroundView(ctx)],
  [/^#\/audit$/, () => auditView(ctx)],
];

async function render() {
  ctx.abort.abort();
  ctx.abort = new AbortController();
  const view = document.getElementById("view");
  const hash = location.hash || "#/catalog";
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", hash.startsWith(`#/${a.dataset.nav}`)
    || (a.dataset.nav === "catalog" && hash.startsWith("#/prompts"))));
  if (!ctx.role) {
    mount(view, h("div", { class: "card", id: "signed-out" }, h("h1", {}, "Sign in"),
      h("p", {}, "This server requires a token: paste it above. It is kept in this browser tab only.")));
    return;
  }
  for (const [re, make] of routes) {
    const m = hash.match(re);
    if (m) {
      try {
        mount(view, await make(m));
      } catch (e) {
        mount(view, h("p", { class: "error" }, `${e.message}`));
      }
      return;
    }
  }
  mount(view, h("p", {}, "No such page. ", h("a", { href: "#/catalog" }, "Catalog")));
}

async function signIn() {
  try {
    ctx.role = await whoami();
  } catch (e) {
    ctx.role = "";
    toast(e.message, true);
  }
  const signedIn = Boolean(token.get());
  document.getElementById("whoami").textContent = ctx.role ? `${ctx.role}${signedIn ? "" : " (auth off)"}` : "";
  document.getElementById("whoami").dataset.role = ctx.role;
  document.querySelectorAll("[data-role-needed]").forEach((a) => { a.hidden = !ctx.can(a.dataset.roleNeeded); });
  const authOff = !signedIn && Boolean(ctx.role);  // no token needed: nothing to sign in with
  document.getElementById("token").hidden = signedIn || authOff;
  document.getElementById("signin-button").hidden = signedIn || authOff;
  document.getElementById("signout").hidden = !signedIn;
  if (signedIn && !ctx.role) {
    token.set("");
    toast("That token is unknown, expired or revoked.", true);
    return signIn();
  }
  await render();
}

document.getElementById("signin").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  token.set(input.value.trim());
  input.value = "";
  signIn();
});
document.getElementById("signout").addEventListener("click", () => {
  token.set("");
  signIn();
});
window.addEventListener("hashchange", render);
signIn();
