//! *When* to try again: exponential backoff with jitter, or the server's `Retry-After`, always
//! within `[initial, max]`.
//!
//! Pure: the random part comes in as a number, so the policy is tested as a table. What is
//! worth retrying at all is [`super::retry`]'s decision.

use std::time::Duration;

/// The pause before each next attempt at one batch.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Starts at `initial` and doubles per failure up to `max` (`max` below `initial` is raised
    /// to it).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max: max.max(initial), step: initial }
    }

    /// The pause before the next attempt. `retry_after`, the server's `Retry-After`, is obeyed
    /// but bounded to `[initial, max]`: a server's "wait an hour" cannot stall the agent past
    /// `-max-backoff`, and its "0" cannot make it spin. Without it: between half and all of the
    /// current step (`jitter` in 0..=1 picks where), so that agents that failed together do not
    /// retry together; the step then doubles.
    pub fn pause(&mut self, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        match retry_after {
            Some(d) => d.clamp(self.initial, self.max),
            None => step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)),
        }
    }
}

/// A random jitter fraction for [`Backoff::pause`].
pub fn jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pauses_double_up_to_the_max_and_obey_retry_after_within_bounds() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let table: &[(Option<Duration>, f64, Duration)] = &[
            (None, 1.0, 100 * MS),
            (None, 1.0, 200 * MS),
            (None, 0.0, 200 * MS), // half of 400
            (Some(Duration::from_secs(3600)), 0.5, 1000 * MS),
            (Some(Duration::ZERO), 0.5, 100 * MS),
            (Some(300 * MS), 0.5, 300 * MS),
            (None, 1.0, 1000 * MS),
            (None, 7.0, 1000 * MS),
        ];
        for (i, (retry_after, jitter, want)) in table.iter().enumerate() {
            assert_eq!(b.pause(*retry_after, *jitter), *want, "step {i}");
        }
        let mut odd = Backoff::new(100 * MS, 10 * MS);
        assert_eq!(odd.pause(Some(Duration::from_secs(5)), 0.0), 100 * MS);
    }
}
