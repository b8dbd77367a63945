//! Sleeping until work is due on the wall clock, noticing that the machine slept or the clock
//! was set, and retrying quickly right after.
//!
//! Token expiry is wall-clock time, but tokio's timers run on the monotonic clock, which does not
//! count the time the machine is suspended (Linux `CLOCK_MONOTONIC`, macOS
//! `mach_absolute_time`): a 30 s sleep started before a suspend ends 30 s of *awake* time later,
//! long after every editor window woke and asked for a token. So the agent waits on an
//! [`Alarm`], which resolves at a wall-clock deadline, or earlier when the wall clock moved
//! under it (a resume, a clock set), and then says how far the wall clock jumped.
//!
//! - **Linux**: a `timerfd` on `CLOCK_REALTIME`, armed with an absolute deadline and
//!   `TFD_TIMER_CANCEL_ON_SET` ([`timerfd`]). The kernel fires it at the deadline, counting
//!   suspended time, and cancels it on every clock set and on resume, which wakes the agent at
//!   once. Between those, nothing: an idle agent makes no system call and takes no wake-up. A
//!   kernel that refuses the timer (a seccomp filter, a kernel older than 2.6.27) gets the tick.
//! - **Elsewhere** (macOS, Windows), for now: the tick. Both clocks are read every [`TICK`], and
//!   when the wall clock moved further than the monotonic one by more than [`JUMP_THRESHOLD`]
//!   the alarm resolves; so does reaching the deadline. It costs a timer wake-up twice a second
//!   and two clock reads (no file I/O). Where the monotonic clock counts suspended time
//!   (Windows' performance counter is documented to keep counting across sleep on current
//!   systems) nothing is lost either way. macOS's wall-clock `kqueue` timers
//!   (`NOTE_ABSOLUTE`) and Windows' absolute waitable timers with the resume notification would
//!   bring the idle cost there to zero too; they are not built yet.
//!
//! A wall clock set back, or stepped by NTP, is reported the same way as a suspend and only makes
//! the agent look again, which is harmless.
//!
//! Verified: the jump detector by the table below; the whole path on Linux by the `agent_wake`
//! tests, which move only the agent's wall clock (libfaketime, monotonic left alone) while it runs
//! and then, since a timerfd hears of a clock change only from the kernel, set the system clock
//! to the current time (as root; the test says so and skips when it cannot), and check that the
//! refresh follows within 2 s, several times; the idle cost by `benches/agent_idle.rs`. macOS
//! and Windows: the tick is the code all platforms shared before, and the detector is the same.

use std::time::{Duration, Instant, SystemTime};

use super::{CODEX_WINDOW, MAX_BACKOFF};

#[cfg(target_os = "linux")]
mod timerfd;

/// Without a wall-clock timer, how often both clocks are read: a wake is acted on within this
/// (plus the refresh).
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

/// Waits for a wall-clock deadline; see the module docs.
#[derive(Debug)]
pub(super) struct Alarm {
    timer: Timer,
    detector: JumpDetector,
}

#[derive(Debug)]
enum Timer {
    #[cfg(target_os = "linux")]
    WallClock(timerfd::WallTimer),
    Tick(tokio::time::Interval),
}

impl Alarm {
    /// The platform's wall-clock timer, else the tick. Needs a running tokio runtime.
    pub(super) fn start() -> Self {
        #[cfg(target_os = "linux")]
        let timer = match timerfd::WallTimer::new() {
            Ok(timer) => Timer::WallClock(timer),
            Err(error) => {
                tracing::info!(%error, "no wall-clock timer (timerfd); reading the clocks twice a second instead");
                Self::tick()
            }
        };
        #[cfg(not(target_os = "linux"))]
        let timer = Self::tick();
        let mut detector = JumpDetector::new(JUMP_THRESHOLD);
        detector.observe(SystemTime::now(), Instant::now());
        Self { timer, detector }
    }

    fn tick() -> Timer {
        let mut interval = tokio::time::interval(TICK);
        // A tick that comes late (a long refresh) is not made up for with a burst.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Timer::Tick(interval)
    }

    /// Resolves at `deadline` (wall clock), or earlier when the wall clock jumped or was set;
    /// returns the jump since the previous reading, if the clocks disagree by more than
    /// [`JUMP_THRESHOLD`]. The readings run on from one call to the next, so a jump while the
    /// agent was busy between two waits (a suspend during a refresh) ends the next wait at once.
    /// Cancel-safe: the next call arms the timer afresh.
    pub(super) async fn until(&mut self, deadline: SystemTime) -> Option<ClockJump> {
        match &mut self.timer {
            #[cfg(target_os = "linux")]
            Timer::WallClock(timer) => {
                // Armed before the clocks are read: a clock change after the reading cancels
                // the armed timer, one before it shows in the reading. None falls between.
                let waited = match timer.arm(deadline) {
                    Ok(()) => {
                        let jump = self.detector.observe(SystemTime::now(), Instant::now());
                        if jump.is_some() {
                            return jump;
                        }
                        timer.expired().await.map(drop)
                    }
                    Err(error) => Err(error),
                };
                if let Err(error) = waited {
                    // Not expected once the timer exists; never a busy loop: fall back for good.
                    tracing::info!(%error, "the wall-clock timer failed; reading the clocks twice a second instead");
                    self.timer = Self::tick();
                }
                self.observe()
            }
            Timer::Tick(interval) => loop {
                let jump = self.detector.observe(SystemTime::now(), Instant::now());
                if jump.is_some() || SystemTime::now() >= deadline {
                    return jump;
                }
                interval.tick().await;
            },
        }
    }

    /// The jump since the previous reading, if any: read before each look, so that a jump is
    /// reported before the refresh it causes.
    pub(super) fn jumped(&mut self) -> Option<ClockJump> {
        self.observe()
    }

    fn observe(&mut self) -> Option<ClockJump> {
        self.detector.observe(SystemTime::now(), Instant::now())
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
