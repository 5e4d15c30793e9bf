// The traffic view: exchanges newest first, following new ones as the server commits them
// (`GET /query?follow=1`), paused and resumed by the user; a detail panel with every field.
//
// Keyboard: the table is one tab stop; ArrowUp/ArrowDown/Home/End/PageUp/PageDown move between
// rows, Enter or Space shows the row's detail, Escape closes it and returns to the row.

import { follow, getJSON } from "./api.js";
import { bytes, clock, el, micros, statusClass, statusText, whoCell } from "./format.js";

/** Rows kept on the page; older ones are dropped as new ones arrive. */
const MAX_ROWS = 500;
/** Records held while paused; beyond it the oldest held are dropped (and counted). */
const MAX_HELD = 5000;

export class TrafficView {
  constructor(setStatus) {
    this.setStatus = setStatus;
    this.body = document.querySelector("#traffic tbody");
    this.note = document.getElementById("traffic-note");
    this.empty = document.getElementById("traffic-empty");
    this.pauseButton = document.getElementById("pause");
    this.detail = document.getElementById("detail");
    this.rows = [];
    this.byExchange = new Map();
    this.held = [];
    this.droppedWhilePaused = 0;
    this.paused = false;
    this.abort = null;
    this.live = false;
    this.pauseButton.addEventListener("click", () => this.setPaused(!this.paused));
    this.body.addEventListener("keydown", (e) => this.onKey(e));
    this.body.addEventListener("click", (e) => {
      const tr = e.target.closest("tr");
      if (tr) this.select(tr, true);
    });
    document.getElementById("detail-close").addEventListener("click", () => this.closeDetail());
    this.detail.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.closeDetail();
    });
  }

  /** Starts showing `params` (a URLSearchParams of filters): a live stream, or one query when
   * the filter has an end (`until`). */
  show(params) {
    this.stop();
    this.clear();
    const abort = new AbortController();
    this.abort = abort;
    const q = new URLSearchParams(params);
    q.set("limit", "200");
    if (q.has("until")) {
      this.pauseButton.disabled = true;
      this.note.textContent = "Not live: the filter has an end (Until).";
      getJSON("query", q, abort.signal)
        .then((answer) => {
          for (const r of answer.records) this.add(r, false, "append");
          this.setStatus(`${answer.records.length} exchanges${answer.truncated ? " (newest shown)" : ""}`);
          this.refreshEmpty();
        })
        .catch((e) => abort.signal.aborted || this.setStatus(e.message, true));
      return;
    }
    this.pauseButton.disabled = false;
    this.refreshEmpty();
    follow(
      q,
      {
        record: (r, update) => this.arrive(r, update),
        // Rows after the backlog are new: they are highlighted as they arrive.
        cursor: () => {
          this.caughtUp = true;
        },
        state: (s) => {
          this.live = s === "live";
          this.setStatus(this.live ? "live" : s, !this.live);
          this.updateNote();
        },
        error: (e) => this.setStatus(e.message, true),
      },
      abort.signal,
    );
  }

  stop() {
    this.abort?.abort();
    this.abort = null;
  }

  clear() {
    this.body.replaceChildren();
    this.rows = [];
    this.byExchange.clear();
    this.held = [];
    this.droppedWhilePaused = 0;
    this.caughtUp = false;
    this.closeDetail();
    this.updateNote();
  }

  setPaused(paused) {
    this.paused = paused;
    this.pauseButton.setAttribute("aria-pressed", String(paused));
    this.pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      for (const [r, update] of this.held) this.add(r, update, "prepend");
      this.held = [];
      this.droppedWhilePaused = 0;
      this.refreshEmpty();
    }
    this.updateNote();
  }

  arrive(r, update) {
    if (this.paused) {
      this.held.push([r, update]);
      if (this.held.length > MAX_HELD) {
        this.held.shift();
        this.droppedWhilePaused++;
      }
    } else {
      this.add(r, update, "prepend");
      this.refreshEmpty();
    }
    this.updateNote();
  }

  updateNote() {
    const parts = [`${this.rows.length} shown`];
    if (this.paused) {
      parts.push(`paused: ${this.held.length} new held`);
      if (this.droppedWhilePaused) parts.push(`${this.droppedWhilePaused} dropped while paused`);
    }
    this.note.textContent = parts.join(" · ");
    this.pauseButton.textContent = this.paused ? `Resume (${this.held.length} new)` : "Pause";
  }

  refreshEmpty() {
    this.empty.hidden = this.rows.length > 0;
  }

  /** Adds a record, or replaces the row of the same exchange when the server sends an update. */
  add(r, update, where) {
    const known = r.exchange_id != null ? this.byExchange.get(r.exchange_id) : null;
    if (update && known) {
      const tr = row(r);
      tr.tabIndex = known.tr.tabIndex;
      if (known.tr.getAttribute("aria-selected") === "true") tr.setAttribute("aria-selected", "true");
      known.tr.replaceWith(tr);
      const at = this.rows.indexOf(known);
      known.tr = tr;
      known.record = r;
      tr.entry = known;
      if (at >= 0 && this.detailEntry === known) this.showDetail(known);
      return;
    }
    const entry = { record: r, tr: row(r) };
    entry.tr.entry = entry;
    if (where === "prepend") {
      this.body.prepend(entry.tr);
      this.rows.unshift(entry);
      if (this.caughtUp) entry.tr.classList.add("fresh");
    } else {
      this.body.append(entry.tr);
      this.rows.push(entry);
    }
    if (r.exchange_id != null) this.byExchange.set(r.exchange_id, entry);
    while (this.rows.length > MAX_ROWS) {
      const old = this.rows.pop();
      old.tr.remove();
      if (old.record.exchange_id != null && this.byExchange.get(old.record.exchange_id) === old) {
        this.byExchange.delete(old.record.exchange_id);
      }
    }
    // One tab stop: the selected row, else the first.
    if (!this.body.querySelector('tr[tabindex="0"]') && this.rows.length) this.rows[0].tr.tabIndex = 0;
  }

  onKey(e) {
    const tr = e.target.closest("tr");
    if (!tr) return;
    const rows = [...this.body.rows];
    const at = rows.indexOf(tr);
    const page = 15;
    const to = {
      ArrowDown: at + 1,
      ArrowUp: at - 1,
      Home: 0,
      End: rows.length - 1,
      PageDown: at + page,
      PageUp: at - page,
    }[e.key];
    if (to !== undefined) {
      e.preventDefault();
      const next = rows[Math.max(0, Math.min(rows.length - 1, to))];
      if (next) this.focusRow(next);
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      this.select(tr, true);
    } else if (e.key === "Escape") {
      this.closeDetail();
    }
  }

  focusRow(tr) {
    for (const r of this.body.querySelectorAll('tr[tabindex="0"]')) r.tabIndex = -1;
    tr.tabIndex = 0;
    tr.focus();
  }

  select(tr, open) {
    for (const r of this.body.querySelectorAll('tr[aria-selected="true"]')) r.removeAttribute("aria-selected");
    tr.setAttribute("aria-selected", "true");
    this.focusRow(tr);
    if (open) this.showDetail(tr.entry);
  }

  showDetail(entry) {
    this.detailEntry = entry;
    const r = entry.record;
    document.getElementById("detail-title").textContent = `${r.method} ${r.path} → ${statusText(r.status)}`;
    const dl = document.getElementById("detail-fields");
    dl.replaceChildren();
    for (const [key, value] of Object.entries(r)) {
      dl.append(el("dt", { text: key }));
      dl.append(value == null ? el("dd", { class: "unknown", text: "unknown" }) : el("dd", { text: String(value) }));
    }
    this.detail.hidden = false;
  }

  closeDetail() {
    if (this.detail.hidden) return;
    this.detail.hidden = true;
    const back = this.detailEntry?.tr;
    this.detailEntry = null;
    if (back?.isConnected) back.focus();
  }
}

function row(r) {
  const tr = el("tr", { tabindex: "-1", "data-exchange": r.exchange_id ?? null });
  const status = el("span", { class: `status ${statusClass(r.status)}`, text: statusText(r.status) });
  tr.append(
    el("td", { class: "mono", title: r.ts, text: clock(r.ts) }),
    el("td", { text: r.method }),
    el("td", { class: "path", title: r.host ? `${r.host}${r.path}` : r.path, text: r.path }),
    el("td", {}, status),
    el("td", { class: "num", text: r.status === 0 ? "–" : micros(r.latency_us) }),
    whoCell(r, "client"),
    whoCell(r, "server"),
    el("td", { class: "num", text: `${bytes(r.req_bytes)} / ${bytes(r.resp_bytes)}` }),
    el("td", { class: "muted", text: r.node }),
  );
  return tr;
}
