// The map view: `GET /map` drawn as nodes (pods, processes, external addresses, each its own
// shape) and edges (calls, client → server) whose width is their share of the calls and whose
// colour and dash say whether any failed (with the error share written on the edge, so that
// colour is never the only signal). Laid out by d3-force (vendored, ISC licence): a fixed number
// of ticks from its deterministic start, so that the same map is drawn the same way.
// Choosing an edge (click, or Enter) shows its exchanges in the traffic view.

import { micros, percent, rate, svg } from "./format.js";
import { AnswerView } from "./view.js";

const RADIUS = 16;

export class MapView extends AnswerView {
  constructor(setStatus, openTraffic) {
    super("map", setStatus);
    this.openTraffic = openTraffic;
    this.root = document.getElementById("map");
    this.note = document.getElementById("map-note");
    this.empty = document.getElementById("map-empty");
    document.getElementById("map-refresh").addEventListener("click", () => this.load());
  }

  ask(q) {
    q.set("limit", "150");
  }

  summary(answer) {
    const calls = answer.edges.reduce((n, e) => n + e.count, 0);
    return `${answer.nodes.length} nodes, ${answer.edges.length} edges, ${calls} calls`;
  }

  render(answer) {
    const box = this.root.getBoundingClientRect();
    const width = Math.max(400, box.width);
    const height = Math.max(300, box.height);
    this.root.replaceChildren();
    this.empty.hidden = answer.edges.length > 0;
    this.note.textContent = answer.truncated ? "Busiest edges shown (more matched)." : "";
    if (!answer.edges.length) return;

    const nodes = answer.nodes.map((n) => ({ ...n }));
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const links = answer.edges.map((e) => ({ ...e, source: e.client, target: e.server }));
    layout(nodes, links, width, height);

    // Fit what was laid out into the view, labels included.
    const xs = nodes.map((n) => n.x);
    const ys = nodes.map((n) => n.y);
    // At most 1:1 (a small map is not blown up), centred.
    const pad = 150;
    const minX = Math.min(...xs) - pad;
    const minY = Math.min(...ys) - 50;
    const w = Math.max(...xs) + pad - minX;
    const h = Math.max(...ys) + 50 - minY;
    const vw = Math.max(w, width);
    const vh = Math.max(h, height);
    this.root.setAttribute("viewBox", `${minX - (vw - w) / 2} ${minY - (vh - h) / 2} ${vw} ${vh}`);

    const defs = svg("defs");
    for (const kind of ["ok", "warn", "bad"]) {
      defs.append(
        svg(
          "marker",
          // In user units: the same arrowhead on a thin edge and a thick one.
          { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 11, markerHeight: 11, markerUnits: "userSpaceOnUse", orient: "auto" },
          svg("path", { d: "M0 0 L10 5 L0 10 z", class: `arrow ${kind}`, fill: kind === "ok" ? "#6e7781" : kind === "warn" ? "#9a6700" : "#b42318" }),
        ),
      );
    }
    this.root.append(defs);

    const most = Math.max(...links.map((l) => l.count));
    const pairs = new Set(links.map((l) => `${l.client}\u0000${l.server}`));
    const edgeLayer = svg("g", { class: "edges" });
    for (const l of links) {
      const a = byId.get(l.client);
      const b = byId.get(l.server);
      const failed = l.errors + l.no_response;
      const share = l.count ? failed / l.count : 0;
      const kind = failed === 0 ? "ok" : share < 0.05 ? "warn" : "bad";
      // Both directions between two nodes: bend each to its own side.
      const bend = pairs.has(`${l.server}\u0000${l.client}`) ? 28 : 0;
      const d = path(a, b, bend, l.client === l.server);
      // Short, so that labels seldom meet; the latencies are in the tooltip and the aria-label.
      const label = `${rate(l.rate)} · ${failed ? `${percent(failed, l.count)} err` : "ok"}`;
      const g = svg(
        "g",
        {
          class: "edge",
          tabindex: "0",
          role: "button",
          "data-client": l.client,
          "data-server": l.server,
          "aria-label": `${a.name} calls ${b.name}: ${l.count} calls, ${failed} failed, p95 ${micros(l.p95_us)}. Enter shows them.`,
        },
        svg("title", { text: `${a.name} → ${b.name}\n${l.count} calls, ${l.errors} 5xx, ${l.no_response} no response\np50 ${micros(l.p50_us)}, p95 ${micros(l.p95_us)}, p99 ${micros(l.p99_us)}` }),
        svg("path", { class: "hit", d: d.d }),
        svg("path", {
          class: `edge-line ${kind}`,
          d: d.d,
          "stroke-width": (1.5 + 6 * Math.sqrt(l.count / most)).toFixed(1),
          "marker-end": `url(#arrow-${kind})`,
        }),
        svg("text", { x: d.mid[0], y: d.mid[1] - 4, "text-anchor": "middle", class: kind === "ok" ? "" : "bad", text: label }),
      );
      const choose = () => this.openTraffic({ client: l.client, server: l.server });
      g.addEventListener("click", choose);
      g.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          choose();
        }
      });
      edgeLayer.append(g);
    }
    const nodeLayer = svg("g", { class: "nodes" });
    for (const n of nodes) {
      const g = svg("g", { class: `node ${n.kind}`, "data-id": n.id, transform: `translate(${n.x.toFixed(1)},${n.y.toFixed(1)})` });
      g.append(svg("title", { text: `${n.kind}: ${n.name}` }), shape(n.kind));
      const text = n.name.length > 32 ? `${n.name.slice(0, 31)}…` : n.name;
      g.append(svg("text", { y: RADIUS + 14, "text-anchor": "middle", text }));
      nodeLayer.append(g);
    }
    this.root.append(edgeLayer, nodeLayer);
  }
}

function shape(kind) {
  if (kind === "pod") return svg("circle", { r: RADIUS, class: "shape pod" });
  if (kind === "process") return svg("rect", { x: -RADIUS, y: -RADIUS, width: 2 * RADIUS, height: 2 * RADIUS, rx: 6, class: "shape process" });
  return svg("path", { d: `M0 ${-RADIUS - 2} L${RADIUS + 2} 0 L0 ${RADIUS + 2} L${-RADIUS - 2} 0 Z`, class: "shape address" });
}

/** A line (or a bend) from `a`'s rim to `b`'s, its midpoint for the label; a loop for a self-call. */
function path(a, b, bend, self) {
  if (self) {
    const r = RADIUS;
    return { d: `M${a.x - 6} ${a.y - r} C${a.x - 50} ${a.y - 90} ${a.x + 50} ${a.y - 90} ${a.x + 6} ${a.y - r}`, mid: [a.x, a.y - 72] };
  }
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len = Math.hypot(dx, dy) || 1;
  const ux = dx / len;
  const uy = dy / len;
  const start = [a.x + ux * (RADIUS + 2), a.y + uy * (RADIUS + 2)];
  const end = [b.x - ux * (RADIUS + 4), b.y - uy * (RADIUS + 4)];
  if (!bend) {
    // The label a little off the line, on its upper side, past the middle (clear of the
    // caller's own label, which sits under it).
    const side = ux >= 0 ? 1 : -1;
    const at = (i) => start[i] + 0.58 * (end[i] - start[i]);
    const mid = [at(0) + side * uy * 8, at(1) - side * ux * 8];
    return { d: `M${start[0]} ${start[1]} L${end[0]} ${end[1]}`, mid };
  }
  const c = [(a.x + b.x) / 2 - uy * bend, (a.y + b.y) / 2 + ux * bend];
  const mid = [(start[0] + 2 * c[0] + end[0]) / 4, (start[1] + 2 * c[1] + end[1]) / 4];
  return { d: `M${start[0]} ${start[1]} Q${c[0]} ${c[1]} ${end[0]} ${end[1]}`, mid };
}

/**
 * How far down the calls each node is: 0 for one nobody calls, else one more than its deepest
 * caller (a cycle stops growing after as many rounds as there are nodes).
 */
function depths(nodes, links) {
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  for (let round = 0; round < nodes.length; round++) {
    let changed = false;
    for (const l of links) {
      if (l.client === l.server) continue;
      const want = depth.get(l.client) + 1;
      if (want > depth.get(l.server)) {
        depth.set(l.server, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return depth;
}

/**
 * Positions every node: callers left of what they call (a column per depth), spread up and down
 * by d3-force so that nodes and labels do not overlap; without d3 (it failed to load), the same
 * columns with evenly spaced rows.
 */
function layout(nodes, links, width, height) {
  const depth = depths(nodes, links);
  const column = (n) => 120 + 300 * depth.get(n.id);
  // Each group of connected nodes gets its own band, so that unrelated calls do not cross.
  const band = components(nodes, links);
  const bands = Math.max(1, ...band.values()) + 1;
  const row = (n) => ((band.get(n.id) + 0.5) * height) / bands;
  const d3 = window.d3;
  if (d3?.forceSimulation) {
    const simulation = d3
      .forceSimulation(nodes)
      .force("link", d3.forceLink(links).id((n) => n.id).distance(260).strength(0.15))
      .force("charge", d3.forceManyBody().strength(-800))
      .force("collide", d3.forceCollide(65))
      .force("x", d3.forceX(column).strength(1))
      .force("y", d3.forceY(row).strength(0.25))
      .stop();
    for (let i = 0; i < 400; i++) simulation.tick();
    // forceLink replaced source/target with the node objects: put the ids back.
    for (const l of links) {
      l.source = l.client;
      l.target = l.server;
    }
    return;
  }
  const rows = new Map();
  for (const n of nodes) {
    const d = depth.get(n.id);
    rows.set(d, (rows.get(d) ?? 0) + 1);
    n.x = column(n);
    n.y = 90 * rows.get(d);
  }
}

/** Each node's group of connected nodes, numbered from 0 in the order the nodes come. */
function components(nodes, links) {
  const parent = new Map(nodes.map((n) => [n.id, n.id]));
  const find = (id) => {
    while (parent.get(id) !== id) {
      parent.set(id, parent.get(parent.get(id)));
      id = parent.get(id);
    }
    return id;
  };
  for (const l of links) parent.set(find(l.client), find(l.server));
  const number = new Map();
  const out = new Map();
  for (const n of nodes) {
    const root = find(n.id);
    if (!number.has(root)) number.set(root, number.size);
    out.set(n.id, number.get(root));
  }
  return out;
}
