// The page's calls to the server's API, relative to the page's own URL (so that it works behind
// `kubectl port-forward` and a path prefix alike), with the bearer token when the server has one.
//
// A 401 opens the token dialog once, whoever asked: every caller waits for the same answer, then
// retries. The token is kept in sessionStorage: for this tab, gone when it closes.

const TOKEN_KEY = "liteobs.token";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

let asking = null;

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Shows the token dialog (once for all callers) and resolves when a token was entered. */
function askToken() {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  const why = document.getElementById("token-why");
  const refused = sessionStorage.getItem(TOKEN_KEY) != null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (refused) {
    why.textContent = "The server refused that token. Enter the one it was started with (-token).";
    why.classList.add("refused");
  }
  asking = new Promise((resolve) => {
    const done = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = "";
      form.removeEventListener("submit", done);
      dialog.close();
      asking = null;
      resolve();
    };
    form.addEventListener("submit", done);
    // Escape would leave the page with nothing to show: the dialog stays until a token is given.
    dialog.addEventListener("cancel", (e) => e.preventDefault(), { once: true });
    dialog.showModal();
    input.focus();
  });
  return asking;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return new ApiError(body.error ?? response.statusText, response.status);
  } catch {
    return new ApiError(`${response.status} ${response.statusText}`, response.status);
  }
}

/** `GET path?params` as JSON. */
export async function getJSON(path, params, signal) {
  for (;;) {
    const response = await fetch(`${path}?${params}`, { headers: headers(), cache: "no-store", signal });
    if (response.status === 401) {
      await askToken();
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });

/**
 * `GET /query?follow=1`: calls `on.record(record, isUpdate)` for each record line, `on.cursor()`
 * after each page of them (the first one ends the backlog), `on.state(text)`
 * when the stream connects or drops, `on.error(error)` for an answer that retrying cannot fix.
 * Reconnects with the last cursor, so that nothing is missed or repeated, until `signal` aborts.
 */
export async function follow(params, on, signal) {
  let cursor = null;
  let wait = 1000;
  let reason = "";
  while (!signal.aborted) {
    const q = new URLSearchParams(params);
    q.set("follow", "1");
    if (cursor != null) q.set("cursor", String(cursor));
    try {
      const response = await fetch(`query?${q}`, { headers: headers(), cache: "no-store", signal });
      if (response.status === 401) {
        await askToken();
        continue;
      }
      if (response.status === 400) {
        on.error(await errorOf(response));
        return;
      }
      if (!response.ok) throw await errorOf(response);
      on.state("live");
      wait = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (!line) continue;
          const msg = JSON.parse(line);
          if (msg.record) on.record(msg.record, msg.update === true);
          if (msg.cursor != null) {
            cursor = msg.cursor;
            on.cursor?.();
          }
        }
        if (buffer.length > 1 << 20) throw new Error("a line of the stream is longer than 1 MiB");
      }
    } catch (e) {
      if (signal.aborted) return;
      reason = ` (${e.message})`;
    }
    if (signal.aborted) return;
    on.state(`reconnecting${reason}`);
    reason = "";
    await sleep(wait, signal);
    wait = Math.min(wait * 2, 15000);
  }
}
