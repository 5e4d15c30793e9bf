//! What the client sends while the server has not yet said how to read it: after an
//! `Upgrade` request (WebSocket, h2c), a `CONNECT`, or a request with `Expect: 100-continue`
//! and a body. Those bytes are held (capped by `max_conn_buffer`, charged to the budget) and
//! parsed once the answer comes:
//!
//! | awaited | answer | the held bytes are |
//! |---|---|---|
//! | upgrade / CONNECT | 101 / CONNECT 2xx | another protocol: parsing ends ([`super::exchange`]) |
//! | upgrade / CONNECT | anything else, or the close | the next requests |
//! | 100-continue | `100 Continue`, or the close | the body |
//! | 100-continue | a final status first | the body, unless they start with a request line: then the client dropped the body (RFC 9110 §10.1.1) |
//!
//! Past the cap, an upgrade's bytes are dropped (counted) and the stream resynchronises after a
//! refusal; a 100-continue body is parsed as the body at once (the client did not wait).

use super::HttpContext;
use super::conn::{Awaited, AwaitedBody, Held, HttpConn, Role, State};
use super::resync::{MAX_START_LINE, Verdict, check_start};
use crate::reassemble::Dir;

impl HttpConn {
    /// The request just parsed in `d` expects `100 Continue` before its body.
    pub(super) fn await_continue(&mut self, d: Dir, body: AwaitedBody) {
        self.half(d).state = State::Await(Awaited::Continue { body, answered: false });
    }

    /// State `Await`: true when the bytes were taken (held or dropped), false when the state
    /// changed and they are to be parsed in the new one.
    pub(super) fn await_data(
        &mut self,
        d: Dir,
        ts: super::conn::At,
        bytes: &[u8],
        awaited: Awaited,
        cx: &mut HttpContext<'_>,
    ) -> bool {
        match awaited {
            Awaited::Continue { body, answered: true } => {
                // Decide on the client's next line, however it is cut into segments: hold
                // until it is complete (or cannot be a request line).
                self.hold(d, ts, bytes, cx);
                let still_waiting =
                    matches!(self.half(d).state, State::Await(Awaited::Continue { answered: true, .. }));
                if still_waiting && let Some(skipped) = self.held_starts_request(d) {
                    self.continue_decided(d, body, skipped, cx);
                    self.release_held(d, cx);
                }
                true
            }
            Awaited::Switch { overflow: true } => {
                cx.stats.buffer_dropped_bytes += bytes.len() as u64;
                true
            }
            Awaited::Switch { overflow: false } | Awaited::Continue { answered: false, .. } => {
                self.hold(d, ts, bytes, cx);
                true
            }
        }
    }

    /// More was held than allowed while waiting.
    pub(super) fn await_overflow(&mut self, d: Dir, awaited: Awaited, cx: &mut HttpContext<'_>) {
        match awaited {
            Awaited::Switch { .. } => {
                let h = self.half(d);
                tracing::trace!(?d, bytes = h.held_bytes, "bytes after an upgrade request dropped");
                cx.stats.buffer_dropped_bytes += h.held_bytes as u64;
                h.held.clear();
                h.held_bytes = 0;
                h.state = State::Await(Awaited::Switch { overflow: true });
            }
            Awaited::Continue { body, .. } => {
                self.half(d).state = body.state();
                self.release_held(d, cx);
            }
        }
    }

    /// The awaited answer came (`Some(status)`; never 101 or a CONNECT 2xx, which end parsing
    /// before this), or will never come (`None`, the connection closed). No-op unless the
    /// client side is waiting.
    pub(super) fn settle_await(&mut self, d: Dir, answer: Option<u16>, cx: &mut HttpContext<'_>) {
        let State::Await(awaited) = self.half(d).state else {
            return;
        };
        match (awaited, answer) {
            (Awaited::Switch { overflow }, _) => {
                if overflow {
                    self.lose_sync(d);
                } else {
                    self.half(d).state = State::Head;
                }
            }
            (Awaited::Continue { body, .. }, Some(100) | None) => self.half(d).state = body.state(),
            (Awaited::Continue { body, .. }, Some(_)) => match self.held_starts_request(d) {
                Some(skipped) => self.continue_decided(d, body, skipped, cx),
                None => {
                    // Nothing held yet, or the client's next line is still incomplete.
                    self.half(d).state = State::Await(Awaited::Continue { body, answered: true });
                    return;
                }
            },
        }
        self.release_held(d, cx);
    }

    /// Whether what is held in `d` starts with a request line: `Some` once that can be told
    /// (the line is complete, cannot be one, is too long, or a gap or the end follows), `None`
    /// while nothing or only the start of a plausible line is held.
    fn held_starts_request(&self, d: Dir) -> Option<bool> {
        let limit = MAX_START_LINE + 2;
        let mut line: Vec<u8> = Vec::new();
        let mut cut = false;
        for held in &self.halves[d.index()].held {
            match held {
                Held::Data(_, bytes) => {
                    let room = limit.saturating_sub(line.len());
                    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    if line.len() >= limit {
                        break;
                    }
                }
                Held::Gap(_) | Held::End => {
                    cut = true;
                    break;
                }
            }
        }
        if line.is_empty() && !cut {
            return None;
        }
        match check_start(&line, Role::Request, MAX_START_LINE) {
            Verdict::Valid(_) => Some(true),
            Verdict::Invalid => Some(false),
            Verdict::Incomplete if cut || line.len() >= limit => Some(false),
            Verdict::Incomplete => None,
        }
    }

    /// A final status answered an `Expect: 100-continue` request; `skipped` says the client
    /// went on to its next request without sending the body.
    fn continue_decided(&mut self, d: Dir, body: AwaitedBody, skipped: bool, cx: &mut HttpContext<'_>) {
        if skipped {
            cx.stats.continue_bodies_skipped += 1;
            self.half(d).state = State::Head;
            self.message_done(d, cx);
        } else {
            self.half(d).state = body.state();
        }
    }
}
