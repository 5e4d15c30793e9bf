// LiteObs's page: three views over the server's API (traffic, routes, map) and one filter bar
// they share. The view and the filter live in the URL's fragment (`#traffic?status=5xx&since=1h`),
// so a link, reload or the back button shows the same thing.

import { nodeName } from "./format.js";
import { MapView } from "./map.js";
import { RoutesView } from "./routes.js";
import { TrafficView } from "./traffic.js";

const VIEWS = ["traffic", "routes", "map"];
const DEFAULT_SINCE = "15m";
const form = document.getElementById("filters");
const statusLine = document.getElementById("status");

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

/** The fragment as [view, filter parameters]. */
function current() {
  const hash = window.location.hash.replace(/^#/, "");
  const [view, query = ""] = hash.split("?", 2);
  return [VIEWS.includes(view) ? view : "traffic", new URLSearchParams(query)];
}

function navigate(view, params) {
  const query = params.toString();
  const target = `#${view}${query ? `?${query}` : ""}`;
  if (window.location.hash === target) render();
  else window.location.hash = target;
}

/** The filter bar's values as parameters (empty fields left out, `since` always set). */
function formParams() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    const v = String(value).trim();
    if (v) params.set(name, v);
  }
  if (!params.has("since")) params.set("since", DEFAULT_SINCE);
  return params;
}

function fillForm(params) {
  for (const field of form.elements) {
    if (!field.name) continue;
    const value = params.get(field.name) ?? (field.name === "since" ? DEFAULT_SINCE : "");
    if (field.tagName === "SELECT" && value && ![...field.options].some((o) => o.value === value)) {
      field.append(new Option(value, value));
    }
    field.value = value;
  }
  const chip = document.getElementById("edge-filter");
  const client = params.get("client");
  const server = params.get("server");
  chip.hidden = !client && !server;
  chip.replaceChildren();
  if (client || server) {
    const text = client && server ? `${nodeName(client)} → ${nodeName(server)}` : client ? `from ${nodeName(client)}` : `to ${nodeName(server)}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "✕";
    remove.setAttribute("aria-label", "Remove this filter");
    remove.addEventListener("click", () => {
      form.elements.client.value = "";
      form.elements.server.value = "";
      navigate(current()[0], formParams());
    });
    chip.append(`Calls ${text}`, remove);
  }
}

const views = {};
function openTraffic(extra) {
  const params = formParams();
  for (const key of ["client", "server", "route"]) params.delete(key);
  for (const [key, value] of Object.entries(extra)) params.set(key, value);
  navigate("traffic", params);
}
views.traffic = new TrafficView(setStatus);
views.routes = new RoutesView(setStatus, openTraffic);
views.map = new MapView(setStatus, openTraffic);

function render() {
  const [view, params] = current();
  if (!params.has("since")) params.set("since", DEFAULT_SINCE);
  fillForm(params);
  for (const name of VIEWS) {
    const active = name === view;
    document.getElementById(`view-${name}`).hidden = !active;
    const tab = document.getElementById(`tab-${name}`);
    if (active) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
    if (!active) views[name].stop();
  }
  // The tab keeps its own filter in its link, so switching views keeps the filter.
  for (const name of VIEWS) document.getElementById(`tab-${name}`).href = `#${name}?${params}`;
  setStatus("loading…");
  views[view].show(params);
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  navigate(current()[0], formParams());
});
form.addEventListener("change", (e) => {
  if (e.target.tagName === "SELECT") navigate(current()[0], formParams());
});
document.getElementById("clear-filters").addEventListener("click", () => {
  navigate(current()[0], new URLSearchParams({ since: DEFAULT_SINCE }));
});
window.addEventListener("hashchange", render);
render();
