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

/// Whether `bytes` begin with a complete, strict request line.
fn starts_request(bytes: &[u8]) -> bool {
    matches!(check_start(bytes, Role::Request, MAX_START_LINE), Verdict::Valid(_))
}

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
        ts: i64,
        bytes: &[u8],
        awaited: Awaited,
        cx: &mut HttpContext<'_>,
    ) -> bool {
        match awaited {
            Awaited::Continue { body, answered: true } => {
                self.continue_decided(d, body, starts_request(bytes), cx);
                false
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
            (Awaited::Continue { body, .. }, Some(_)) => {
                let first = self.half(d).held.iter().find_map(|held| match held {
                    Held::Data(_, bytes) => Some(starts_request(bytes)),
                    Held::Gap(_) | Held::End => None,
                });
                match first {
                    Some(skipped) => self.continue_decided(d, body, skipped, cx),
                    None => self.half(d).state = State::Await(Awaited::Continue { body, answered: true }),
                }
            }
        }
        self.release_held(d, cx);
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
