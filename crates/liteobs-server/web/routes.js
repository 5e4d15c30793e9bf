// The routes view (RED): `GET /stats?group_by=server,route` as a table of rate, errors and
// latency per server and route, sorted by the server (`sort=`); each row draws its latency
// spread on one log scale shared by the table. Choosing a row (click, or Enter) shows its
// exchanges in the traffic view.

import { el, micros, percent, rate, serverNode, svg, whoCell } from "./format.js";
import { AnswerView } from "./view.js";

const WIDTH = 160;
const HEIGHT = 16;

export class RoutesView extends AnswerView {
  constructor(setStatus, openTraffic) {
    super("stats", setStatus);
    this.openTraffic = openTraffic;
    this.table = document.getElementById("routes");
    this.body = this.table.querySelector("tbody");
    this.note = document.getElementById("routes-note");
    this.empty = document.getElementById("routes-empty");
    this.sort = "count";
    for (const th of this.table.querySelectorAll("th[data-sort]")) {
      th.querySelector("button").addEventListener("click", () => {
        this.sort = th.dataset.sort;
        this.load();
      });
    }
    document.getElementById("routes-refresh").addEventListener("click", () => this.load());
    this.body.addEventListener("click", (e) => {
      const tr = e.target.closest("tr");
      if (tr) this.choose(tr);
    });
    this.body.addEventListener("keydown", (e) => {
      const tr = e.target.closest("tr");
      if (!tr) return;
      const rows = [...this.body.rows];
      const at = rows.indexOf(tr);
      const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: rows.length - 1, PageDown: at + 15, PageUp: at - 15 }[e.key];
      if (to !== undefined) {
        e.preventDefault();
        const next = rows[Math.max(0, Math.min(rows.length - 1, to))];
        tr.tabIndex = -1;
        next.tabIndex = 0;
        next.focus();
      } else if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        this.choose(tr);
      }
    });
  }

  ask(q) {
    q.set("group_by", "server,route");
    q.set("sort", this.sort);
    q.set("limit", "200");
    // Rate sorts as Count does (the window is the same for every row): only Count is marked.
    for (const th of this.table.querySelectorAll("th[data-sort]")) {
      if (th.dataset.sort === this.sort && !("alias" in th.dataset)) th.setAttribute("aria-sort", "descending");
      else th.removeAttribute("aria-sort");
    }
  }

  summary(answer) {
    const time = (t) => new Date(t).toLocaleTimeString();
    return `${answer.groups.length} routes, ${time(answer.since)}–${time(answer.until)}`;
  }

  render(answer) {
    this.body.replaceChildren();
    const top = Math.max(1, ...answer.groups.map((g) => g.max_us ?? 1));
    answer.groups.forEach((g, i) => {
      const k = g.key;
      // A `/stats` server key has the record's `dst_*` columns: the traffic table's cell fits it.
      const server = whoCell(k, "server");
      const failed = g.errors + g.no_response;
      const errors = el("td", { class: `num errors${failed ? " some" : ""}` });
      errors.textContent = failed ? `${failed} (${percent(failed, g.count)})` : "0";
      if (g.no_response) errors.title = `${g.errors} answered 5xx, ${g.no_response} got no response`;
      const tr = el(
        "tr",
        { tabindex: i === 0 ? "0" : "-1", "data-server": serverNode(k), "data-route": k.route ?? null },
        server,
        el("td", { class: "route", text: k.route ?? "(none)" }),
        el("td", { class: "num", text: rate(g.rate) }),
        el("td", { class: "num", text: String(g.count) }),
        errors,
        el("td", { class: "num", text: micros(g.p50_us) }),
        el("td", { class: "num", text: micros(g.p95_us) }),
        el("td", { class: "num", text: micros(g.p99_us) }),
        el("td", {}, spread(g, top)),
      );
      this.body.append(tr);
    });
    this.empty.hidden = answer.groups.length > 0;
    const folded = answer.routes_folded ? ` · ${answer.routes_folded} exchanges given a folded route (/prefix/*)` : "";
    this.note.textContent = `${answer.groups.length} server and route pairs${answer.truncated ? " (busiest shown)" : ""}${folded}`;
  }

  choose(tr) {
    const filter = { server: tr.dataset.server };
    if (tr.dataset.route != null) filter.route = tr.dataset.route;
    this.openTraffic(filter);
  }
}

/** p50–p95 as a box, p99 as a tick and the maximum as a dot, on a log scale from 1 µs to `top`. */
function spread(g, top) {
  const label = `p50 ${micros(g.p50_us)}, p95 ${micros(g.p95_us)}, p99 ${micros(g.p99_us)}, max ${micros(g.max_us)}`;
  const s = svg("svg", { class: "dist", width: WIDTH, height: HEIGHT, role: "img", "aria-label": label });
  s.append(svg("title", { text: label }));
  if (g.p50_us == null) return s;
  const x = (us) => 2 + ((WIDTH - 6) * Math.log10(Math.max(1, us))) / Math.log10(Math.max(10, top));
  const mid = HEIGHT / 2;
  s.append(
    svg("line", { class: "range", x1: 2, y1: mid, x2: x(g.max_us), y2: mid }),
    svg("rect", { class: "box", x: x(g.p50_us), y: 3, width: Math.max(2, x(g.p95_us) - x(g.p50_us)), height: HEIGHT - 6 }),
    svg("line", { class: "p99", x1: x(g.p99_us), y1: 1, x2: x(g.p99_us), y2: HEIGHT - 1 }),
    svg("circle", { class: "max", cx: x(g.max_us), cy: mid, r: 2.5 }),
  );
  return s;
}
