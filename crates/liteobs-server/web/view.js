// What the routes and the map views share: one answer of the API at a time. A newer request (a
// filter, a sort, a refresh) aborts the one in flight, so an older answer never replaces it.

import { getJSON } from "./api.js";

export class AnswerView {
  /** `path`: the API route (`stats`, `map`); `setStatus(text, isError)`: the page's status line. */
  constructor(path, setStatus) {
    this.path = path;
    this.setStatus = setStatus;
    this.params = new URLSearchParams();
  }

  show(params) {
    this.params = new URLSearchParams(params);
    this.load();
  }

  stop() {
    this.abort?.abort();
  }

  async load() {
    this.stop();
    const abort = new AbortController();
    this.abort = abort;
    const q = new URLSearchParams(this.params);
    this.ask(q);
    try {
      const answer = await getJSON(this.path, q, abort.signal);
      if (abort.signal.aborted) return;
      this.render(answer);
      this.setStatus(this.summary(answer));
    } catch (e) {
      if (!abort.signal.aborted) this.setStatus(e.message, true);
    }
  }

  /** Adds the view's own parameters to the filter's `q`. */
  ask(_q) {}
}
