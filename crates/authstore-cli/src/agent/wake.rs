//! Noticing that the machine slept, and retrying quickly right after.
//!
//! The agent's timers run on the monotonic clock, which does not count the time the machine is
//! suspended (Linux `CLOCK_MONOTONIC`, macOS `mach_absolute_time`): a 30 s sleep started before
//! a suspend ends 30 s of *awake* time later, long after every editor window woke and asked for a
//! token. Token expiry is wall-clock time. So the agent reads both clocks on a short tick
//! ([`TICK`]) and, when the wall clock moved further than the monotonic one by more than
//! [`JUMP_THRESHOLD`], looks at the credentials at once. The tick costs a timer wake-up twice a
//! second and two clock reads (vDSO calls on Linux, no system call), and no file I/O; a wall
//! clock set back, or stepped by NTP, is reported the same way and only makes the agent look
//! again, which is harmless.
//!
//! Where the monotonic clock does count suspended time (Windows' performance counter is
//! documented to keep counting across sleep on current systems), timers fire on time after a
//! wake and no jump is seen: nothing is lost. A platform wake notification could be added; the
//! tick would stay, since it also covers a clock that was set.
//!
//! Verified: the detector by the table below; the whole path on Linux by the `agent_wake` tests,
//! which moves only the agent's wall clock (libfaketime, monotonic left alone) while it runs and
//! checks that the refresh follows within 2 s, several times. macOS and Windows: by reasoning.

use std::time::{Duration, Instant, SystemTime};

use super::{CODEX_WINDOW, MAX_BACKOFF};

/// How often both clocks are read: a wake is acted on within this (plus the refresh).
pub(super) const TICK: Duration = Duration::from_millis(500);
/// A smaller difference between the two clocks over one tick is scheduling noise or NTP slew.
pub(super) const JUMP_THRESHOLD: Duration = Duration::from_secs(1);
/// How often a transient failure is retried while Codex's own window is open.
pub(super) const URGENT_RETRY: Duration = Duration::from_secs(1);

/// The wall clock moved this much more (forward) or less (backward) than the monotonic clock
/// between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClockJump {
    /// Typically a suspend: the wall clock went on, the monotonic clock did not.
    Forward(Duration),
    /// The wall clock was set back.
    Backward(Duration),
}

impl ClockJump {
    /// Seconds, positive forward, negative backward.
    pub(super) fn signed_secs(self) -> f64 {
        match self {
            ClockJump::Forward(by) => by.as_secs_f64(),
            ClockJump::Backward(by) => -by.as_secs_f64(),
        }
    }
}

/// Compares consecutive readings of the wall clock and the monotonic clock. Pure: the readings
/// are passed in.
#[derive(Debug)]
pub(super) struct JumpDetector {
    threshold: Duration,
    last: Option<(SystemTime, Instant)>,
}

impl JumpDetector {
    pub(super) fn new(threshold: Duration) -> Self {
        Self {
            threshold,
            last: None,
        }
    }

    /// Takes one reading of both clocks; returns the jump since the previous reading, if the
    /// clocks disagree by more than the threshold.
    pub(super) fn observe(&mut self, wall: SystemTime, monotonic: Instant) -> Option<ClockJump> {
        let (last_wall, last_monotonic) = self.last.replace((wall, monotonic))?;
        let monotonic_elapsed = monotonic.saturating_duration_since(last_monotonic);
        let jump = match wall.duration_since(last_wall) {
            Ok(wall_elapsed) if wall_elapsed >= monotonic_elapsed => {
                ClockJump::Forward(wall_elapsed - monotonic_elapsed)
            }
            Ok(wall_elapsed) => ClockJump::Backward(monotonic_elapsed - wall_elapsed),
            Err(before) => ClockJump::Backward(before.duration() + monotonic_elapsed),
        };
        let (ClockJump::Forward(by) | ClockJump::Backward(by)) = jump;
        (by > self.threshold).then_some(jump)
    }
}

/// The agent's tick: resolves when the wall clock jumps.
#[derive(Debug)]
pub(super) struct WakeWatch {
    detector: JumpDetector,
    interval: tokio::time::Interval,
}

impl WakeWatch {
    pub(super) fn start() -> Self {
        let mut interval = tokio::time::interval(TICK);
        // A tick that comes late (a long refresh) is not made up for with a burst.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut detector = JumpDetector::new(JUMP_THRESHOLD);
        detector.observe(SystemTime::now(), Instant::now());
        Self { detector, interval }
    }

    /// The next jump. Cancel-safe: the readings persist between calls.
    pub(super) async fn jumped(&mut self) -> ClockJump {
        loop {
            self.interval.tick().await;
            if let Some(jump) = self.detector.observe(SystemTime::now(), Instant::now()) {
                return jump;
            }
        }
    }
}

/// How long to wait after each transient failure in a row (the authority or the store
/// unreachable). While Codex's own window is open (under 300 s left, or expired), every second,
/// [`URGENT_RETRIES`] times: right after a wake the network may take seconds to come back, and
/// every editor window is about to ask for a token. Otherwise, and once those are spent (a
/// machine offline for longer, an authority that is down), doubling from 1 s up to a minute.
/// A success or a wake starts over.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    previous: Duration,
    urgent: u32,
}

/// How many one-second retries in a row Codex's open window earns: about a minute.
pub(super) const URGENT_RETRIES: u32 = 60;

impl Backoff {
    /// The wait after one more failure, given when the token Codex reads expires.
    pub(super) fn after_failure(
        &mut self,
        expires_at: Option<SystemTime>,
        now: SystemTime,
    ) -> Duration {
        let codex_window_open = expires_at.is_some_and(|exp| {
            exp.duration_since(now)
                .map_or(true, |left| left < CODEX_WINDOW)
        });
        self.previous = if codex_window_open && self.urgent < URGENT_RETRIES {
            self.urgent += 1;
            URGENT_RETRY
        } else {
            (self.previous * 2).clamp(Duration::from_secs(1), MAX_BACKOFF)
        };
        self.previous
    }

    /// After a success, or a wake: the next failure waits a second again.
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// (wall clock advance, monotonic advance, expected jump), one tick each, from a reading
    /// at a fixed start.
    #[test]
    fn a_jump_is_the_difference_between_the_clocks_beyond_the_threshold() {
        enum Wall {
            Ahead(Duration),
            Back(Duration),
        }
        use ClockJump::*;
        use Wall::*;
        let cases = [
            // A normal tick: both clocks agree, give or take scheduling.
            (Ahead(MS(500)), MS(500), None),
            (Ahead(MS(530)), MS(500), None),
            (Ahead(MS(1500)), MS(1500), None),
            // A late tick (a long refresh) is no jump: both clocks saw the same time pass.
            (Ahead(S(40)), S(40), None),
            // Up to the threshold is noise.
            (Ahead(MS(1500)), MS(500), None),
            // A suspend of an hour between two ticks.
            (Ahead(S(3600) + MS(500)), MS(500), Some(Forward(S(3600)))),
            (Ahead(MS(2501)), MS(500), Some(Forward(MS(2001)))),
            // The wall clock set back, past the start or not.
            (Back(S(5)), MS(500), Some(Backward(MS(5500)))),
            (Ahead(MS(100)), S(2), Some(Backward(MS(1900)))),
            (Back(MS(0)), MS(900), None),
        ];
        for (wall, monotonic, expected) in cases {
            let mut detector = JumpDetector::new(JUMP_THRESHOLD);
            let wall_start = SystemTime::UNIX_EPOCH + S(1_800_000_000);
            let monotonic_start = Instant::now();
            assert_eq!(detector.observe(wall_start, monotonic_start), None);
            let wall_now = match wall {
                Ahead(by) => wall_start + by,
                Back(by) => wall_start - by,
            };
            assert_eq!(
                detector.observe(wall_now, monotonic_start + monotonic),
                expected,
                "wall {:?} monotonic {monotonic:?}",
                wall_now.duration_since(wall_start)
            );
        }
    }

    #[test]
    fn each_reading_is_compared_with_the_previous_one_only() {
        let mut detector = JumpDetector::new(JUMP_THRESHOLD);
        let wall = SystemTime::UNIX_EPOCH + S(1_800_000_000);
        let monotonic = Instant::now();
        assert_eq!(detector.observe(wall, monotonic), None);
        // Half a second of drift per tick, four times: never a jump of its own.
        for tick in 1..=4u32 {
            assert_eq!(
                detector.observe(wall + S(1) * tick + MS(500) * tick, monotonic + S(1) * tick),
                None
            );
        }
        // Then a real one, and the next normal tick is quiet again.
        assert_eq!(
            detector.observe(wall + S(7205), monotonic + S(5)),
            Some(ClockJump::Forward(S(7198)))
        );
        assert_eq!(detector.observe(wall + S(7206), monotonic + S(6)), None);
    }

    #[test]
    fn transient_failures_are_retried_every_second_inside_codex_window() {
        let now = SystemTime::UNIX_EPOCH + S(1_800_000_000);
        let at = |secs: i64| {
            if secs >= 0 {
                now + S(secs.unsigned_abs())
            } else {
                now - S(secs.unsigned_abs())
            }
        };
        let cases = [
            // (failures so far, seconds left on the token, expected wait)
            (0, None, S(1)),
            (1, None, S(2)),
            (5, None, S(32)),
            (6, None, S(60)),
            (7, None, S(60)),
            (4, Some(3600), S(16)),
            (4, Some(300), S(16)),
            (4, Some(299), S(1)),
            (6, Some(10), S(1)),
            (6, Some(0), S(1)),
            (6, Some(-30), S(1)),
            (6, Some(-86_400), S(1)),
        ];
        for (failures, left, expected) in cases {
            let mut backoff = Backoff::default();
            for _ in 0..failures {
                backoff.after_failure(None, now);
            }
            assert_eq!(
                backoff.after_failure(left.map(at), now),
                expected,
                "after {failures} failures, {left:?} s left"
            );
        }
    }

    #[test]
    fn one_second_retries_are_bounded_then_back_off_until_a_reset() {
        let now = SystemTime::UNIX_EPOCH + S(1_800_000_000);
        let expired = Some(now - S(3600)); // a machine that was offline for an hour
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..URGENT_RETRIES + 4)
            .map(|_| backoff.after_failure(expired, now))
            .collect();
        assert!(waits[..URGENT_RETRIES as usize].iter().all(|w| *w == S(1)));
        assert_eq!(waits[URGENT_RETRIES as usize..], [S(2), S(4), S(8), S(16)]);
        backoff.reset();
        assert_eq!(backoff.after_failure(expired, now), S(1));
    }
}
