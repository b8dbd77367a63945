//! Linux: a wall-clock alarm on a `timerfd`.
//!
//! The timer runs on `CLOCK_REALTIME` and is armed with an absolute deadline
//! (`TFD_TIMER_ABSTIME`), so it fires when the wall clock reaches the deadline however much of
//! the time in between the machine spent suspended. With `TFD_TIMER_CANCEL_ON_SET` the kernel
//! also cancels it, waking the reader with `ECANCELED`, whenever the clock is set
//! (`clock_settime`, `settimeofday`, an NTP step) and on resume from suspend: that is how the
//! agent hears of a wake at once, rather than by reading the clocks on a tick.
//!
//! The deadline is handed to the kernel as "this long from the kernel's now": the wall clock the
//! agent decides with ([`SystemTime::now`], glibc's `clock_gettime`) and the one the timer runs on
//! are the same clock, except under a preloaded clock faker (libfaketime, in the wake tests),
//! which changes the former only. rustix makes its system calls directly, so neither the timer
//! nor the kernel's clock read is faked.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, SystemTime};

use rustix::io::Errno;
use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, clock_gettime,
    timerfd_create, timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// The deadline was reached.
    Due,
    /// The clock was set, or the machine resumed: the deadline may be far off or long past.
    ClockSet,
}

/// One `timerfd`, re-armed for every wait.
#[derive(Debug)]
pub(super) struct WallTimer {
    fd: AsyncFd<OwnedFd>,
}

impl WallTimer {
    /// Creates the timer (disarmed). Needs a running tokio runtime with I/O enabled.
    pub(super) fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Realtime,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd` and owned by it for its whole life,
        // so the descriptor stays open and `as_raw_fd` returns the same one until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Self { fd })
    }

    /// Arms the timer for `deadline`, replacing any earlier deadline and clearing its
    /// expirations. From here on, a clock set or a resume ends [`WallTimer::expired`].
    pub(super) fn arm(&mut self, deadline: SystemTime) -> io::Result<()> {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let at = add(clock_gettime(ClockId::Realtime), left);
        let arm = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: at,
        };
        timerfd_settime(
            self.fd.get_ref(),
            TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
            &arm,
        )?;
        Ok(())
    }

    /// Waits until the armed deadline is reached, or until the clock is set or the machine
    /// resumes. Cancel-safe.
    pub(super) async fn expired(&mut self) -> io::Result<Expiry> {
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match rustix::io::read(ready.get_inner(), &mut expirations) {
                Ok(_) => return Ok(Expiry::Due),
                Err(Errno::CANCELED) => return Ok(Expiry::ClockSet),
                // Readiness left over from an earlier wait, whose expirations arming cleared.
                Err(Errno::AGAIN) => ready.clear_ready(),
                Err(Errno::INTR) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// `now + left`, never the all-zero value (which would disarm the timer instead).
fn add(now: Timespec, left: Duration) -> Timespec {
    const NANOS: i128 = 1_000_000_000;
    let total = (i128::from(now.tv_sec) * NANOS + i128::from(now.tv_nsec))
        .saturating_add(left.as_nanos().try_into().unwrap_or(i128::MAX))
        .clamp(1, i128::from(i64::MAX) * NANOS);
    Timespec {
        tv_sec: (total / NANOS) as i64,
        tv_nsec: (total % NANOS) as _,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tv_sec: i64, tv_nsec: i64) -> Timespec {
        Timespec {
            tv_sec,
            tv_nsec: tv_nsec as _,
        }
    }

    #[test]
    fn a_deadline_is_the_kernel_clock_plus_what_is_left() {
        let cases = [
            (at(100, 0), Duration::ZERO, at(100, 0)),
            (at(100, 999_999_999), Duration::from_nanos(1), at(101, 0)),
            (
                at(1_800_000_000, 500_000_000),
                Duration::from_millis(2_600),
                at(1_800_000_003, 100_000_000),
            ),
            // Never all zero: that disarms the timer.
            (at(0, 0), Duration::ZERO, at(0, 1)),
            // Far off saturates rather than wrapping into the past.
            (at(100, 0), Duration::MAX, at(i64::MAX, 0)),
        ];
        for (now, left, expected) in cases {
            assert_eq!(add(now, left), expected, "{now:?} + {left:?}");
        }
    }

    impl WallTimer {
        async fn until(&mut self, deadline: SystemTime) -> io::Result<Expiry> {
            self.arm(deadline)?;
            self.expired().await
        }
    }

    #[tokio::test]
    async fn a_past_deadline_is_due_at_once_and_the_timer_can_be_rearmed() {
        let mut timer = WallTimer::new().expect("timerfd");
        let past = SystemTime::now() - Duration::from_secs(60);
        for _ in 0..3 {
            let expiry = tokio::time::timeout(Duration::from_secs(10), timer.until(past))
                .await
                .expect("a past deadline fires at once")
                .expect("the timer works");
            assert_eq!(expiry, Expiry::Due);
        }
        // A wait that is dropped (the agent stopped, the store changed) leaves the timer usable.
        let far = SystemTime::now() + Duration::from_secs(3600);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), timer.until(far))
                .await
                .is_err()
        );
        let expiry = tokio::time::timeout(Duration::from_secs(10), timer.until(SystemTime::now()))
            .await
            .expect("a deadline of now fires")
            .expect("the timer works");
        assert_eq!(expiry, Expiry::Due);
    }
}
