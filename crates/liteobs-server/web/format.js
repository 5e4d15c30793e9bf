// How values are written on the page: durations, sizes, times, and who a side of an exchange is.
// Pure functions; the node ids are the server's (liteobs_model::map::client_node/server_node).

export function micros(us) {
  if (us == null) return "–";
  if (us < 1000) return `${us} µs`;
  if (us < 1e6) return `${trim(us / 1e3)} ms`;
  return `${trim(us / 1e6)} s`;
}

function trim(v) {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function bytes(n) {
  if (n == null) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${trim(n / 1024)} KiB`;
  return `${trim(n / 1024 / 1024)} MiB`;
}

export function rate(perSecond) {
  if (perSecond >= 100) return `${perSecond.toFixed(0)}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  if (perSecond * 60 >= 1) return `${(perSecond * 60).toFixed(1)}/min`;
  return `${(perSecond * 3600).toFixed(1)}/h`;
}

export function percent(part, whole) {
  if (!whole) return "0%";
  const p = (100 * part) / whole;
  return p === 0 ? "0%" : p < 0.1 ? "<0.1%" : p < 10 ? `${p.toFixed(1)}%` : `${p.toFixed(0)}%`;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** `13:04:05.123`, in the browser's time zone (the full time is the cell's title). */
export function clock(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function statusText(status) {
  return status === 0 ? "no response" : String(status);
}

export function statusClass(status) {
  return `s${Math.floor(status / 100)}`;
}

function host(ip) {
  return ip.includes(":") ? `[${ip}]` : ip;
}

/** `shop/web-1`, or the pod alone when its namespace is unknown. */
function pod(namespace, name) {
  return namespace ? `${namespace}/${name}` : name;
}

/** One side of a record: what to call it, and its address. */
export function side(r, which) {
  const p = which === "client" ? "src" : "dst";
  const ip = r[`${p}_ip`];
  const port = r[`${p}_port`];
  const pid = r[`${p}_pid`];
  const comm = r[`${p}_comm`];
  const podName = r[`${p}_pod`];
  let name;
  if (podName != null) name = pod(r[`${p}_namespace`], podName);
  else if (comm != null) name = pid != null ? `${comm} (${pid})` : comm;
  else name = null;
  const address = which === "client" ? host(ip) : `${host(ip)}:${port}`;
  return { name, address };
}

/** A table cell saying who one side is: its name, then its address (muted), both in the title. */
export function whoCell(r, which) {
  const { name, address } = side(r, which);
  const td = el("td", { class: "who", title: name ? `${name} ${address}` : address });
  if (name) td.append(el("span", { text: name }), el("span", { class: "muted", text: address }));
  else td.append(el("span", { text: address }));
  return td;
}

/** The client side's node id, as `/map` names it. */
export function clientNode(r) {
  if (r.src_pod != null) return `pod:${r.src_namespace ?? ""}/${r.src_pod}`;
  if (r.src_comm != null) return `process:${host(r.src_ip)}/${r.src_comm}`;
  return `address:${host(r.src_ip)}`;
}

/** The server side's node id, as `/map` names it (from a record or a `/stats` server key). */
export function serverNode(r) {
  if (r.dst_pod != null) return `pod:${r.dst_namespace ?? ""}/${r.dst_pod}`;
  if (r.dst_comm != null) return `process:${host(r.dst_ip)}/${r.dst_comm}`;
  return `address:${host(r.dst_ip)}:${r.dst_port}`;
}

/** A node id without its kind: `pod:shop/web-1` → `shop/web-1`. */
export function nodeName(id) {
  const colon = id.indexOf(":");
  return colon < 0 ? id : id.slice(colon + 1);
}

/** An element with text and optional attributes; children may be nodes or strings. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

export function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}
