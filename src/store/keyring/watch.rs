//! Linux: the keyring item's change feed, from the Secret Service's signals on the session bus.
//!
//! The feed subscribes (match rules on the bus) to every signal of the interfaces
//! `org.freedesktop.Secret.Collection` (`ItemCreated`, `ItemDeleted`, `ItemChanged`, in every
//! collection) and `org.freedesktop.Secret.Service` (a collection created, deleted, locked or
//! unlocked), and to the bus's `NameOwnerChanged` for `org.freedesktop.secrets` (the keyring
//! daemon started, stopped or replaced). Every such signal counts as a change of the item, as
//! every event in `auth.json`'s directory does for the file store: a [`Mark`] is the count, so
//! "changed since" is one atomic load, and a waiter sleeps until a signal comes. Signals about
//! other items wake readers for nothing (they re-read, find the same login, and wait again);
//! reading an item sends none.
//!
//! The subscription lives on a thread of its own with a single-threaded tokio runtime, as the
//! file store's directory watch lives on its own thread: the feed needs no runtime from its
//! caller, and the caller's runtime never runs the bus connection. Dropping the feed ends it.
//!
//! Conservative, never "no change" after a change: until the subscription is in place (the
//! bus's reply to the match rules), and for good once it cannot be made or its stream ends (the
//! bus went away), the feed polls as it did without it (what was read stays valid for the poll
//! interval, then the item is read again), and losing the subscription counts as a change, so
//! that every reader re-reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};
use zbus::export::futures_util::{StreamExt, stream};
use zbus::{MatchRule, MessageStream, MessageType};

use crate::store::{BoxFuture, ChangeFeed, Mark, MarkKind};

/// How long [`SignalFeed::start`] waits for the subscription before it returns a feed that
/// polls until the subscription is in place.
const START_WAIT: Duration = Duration::from_secs(1);

/// The subscription is being made: poll meanwhile.
const PENDING: u8 = 0;
/// Every change is signalled.
const WATCHING: u8 = 1;
/// No subscription (it could not be made, or it ended): poll.
const POLLING: u8 = 2;

/// Which bus to subscribe on.
#[derive(Debug, Clone)]
pub(crate) enum Bus {
    /// The session bus (`DBUS_SESSION_BUS_ADDRESS`), where the Secret Service is.
    Session,
    /// A bus at this address (tests: a private bus).
    #[cfg_attr(not(test), allow(dead_code))]
    At(String),
}

/// The keyring item's change feed on Linux. See the [module documentation](self).
pub(crate) struct SignalFeed {
    shared: Arc<Shared>,
    poll: Duration,
    /// Dropped with the feed, which ends the subscription's thread.
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for SignalFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalFeed")
            .field("state", &self.shared.state.load(Ordering::Acquire))
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

/// What the subscription's thread and the feed share.
#[derive(Debug)]
struct Shared {
    /// Counts the signals seen (and the loss of the subscription).
    generation: AtomicU64,
    /// Wakes waiters on every signal.
    notify: Notify,
    /// [`PENDING`], [`WATCHING`] or [`POLLING`].
    state: AtomicU8,
}

impl Shared {
    fn is_watching(&self) -> bool {
        self.state.load(Ordering::Acquire) == WATCHING
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// From now on the feed polls; what was marked while watching counts as changed.
    fn polling(&self) {
        self.state.store(POLLING, Ordering::Release);
        self.changed();
    }
}

impl SignalFeed {
    /// Subscribes on the session bus; a feed that polls every `poll` when that fails.
    pub(crate) fn start(poll: Duration) -> Self {
        Self::start_on(Bus::Session, poll)
    }

    /// Subscribes on `bus`, waiting at most [`START_WAIT`] for the bus's answer (past it the
    /// feed polls until the subscription is in place).
    pub(crate) fn start_on(bus: Bus, poll: Duration) -> Self {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            notify: Notify::new(),
            state: AtomicU8::new(PENDING),
        });
        let (stop, stopped) = oneshot::channel();
        let (ready, answered) = std::sync::mpsc::channel();
        let watching = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("authstore-keyring-watch".into())
            .spawn(move || subscription(bus, watching, stopped, ready, poll));
        match spawned {
            Ok(_) => {
                // The thread answers once, when the subscription is made or has failed.
                let _ = answered.recv_timeout(START_WAIT);
            }
            Err(error) => {
                tracing::debug!(%error, poll = ?poll, "cannot start the keyring watch; polling the item");
                shared.polling();
            }
        }
        Self {
            shared,
            poll,
            _stop: stop,
        }
    }
}

/// The subscription's thread: subscribes, then counts signals until the feed is dropped or the
/// stream ends.
fn subscription(
    bus: Bus,
    shared: Arc<Shared>,
    stopped: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<()>,
    poll: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::debug!(%error, poll = ?poll, "cannot start the keyring watch; polling the item");
            shared.polling();
            let _ = ready.send(());
            return;
        }
    };
    runtime.block_on(async move {
        let watch = async {
            let subscribed =
                tokio::time::timeout(super::KEYRING_TIMEOUT, subscribe(&bus)).await;
            let mut signals = match subscribed {
                Ok(Ok(signals)) => signals,
                Ok(Err(error)) => {
                    tracing::debug!(%error, poll = ?poll, "cannot subscribe to the Secret Service's signals; polling the keyring item");
                    shared.polling();
                    let _ = ready.send(());
                    return;
                }
                Err(_) => {
                    tracing::debug!(poll = ?poll, "the session bus did not answer the subscription to the Secret Service's signals; polling the keyring item");
                    shared.polling();
                    let _ = ready.send(());
                    return;
                }
            };
            shared.state.store(WATCHING, Ordering::Release);
            let _ = ready.send(());
            tracing::debug!("watching the Secret Service's signals for changes of the keyring item");
            loop {
                match signals.next().await {
                    Some(Ok(_)) => shared.changed(),
                    Some(Err(error)) => {
                        tracing::debug!(%error, poll = ?poll, "the Secret Service's signals stopped; polling the keyring item");
                        break;
                    }
                    None => {
                        tracing::debug!(poll = ?poll, "the session bus connection ended; polling the keyring item");
                        break;
                    }
                }
            }
            shared.polling();
        };
        tokio::select! {
            () = watch => {}
            _ = stopped => {}
        }
    });
}

/// The match rules, on one connection to `bus`: one stream of every signal that may mean a
/// change of the item.
async fn subscribe(bus: &Bus) -> zbus::Result<stream::SelectAll<MessageStream>> {
    let connection = match bus {
        Bus::Session => zbus::Connection::session().await?,
        Bus::At(address) => {
            zbus::connection::Builder::address(address.as_str())?
                .build()
                .await?
        }
    };
    let rules = [
        MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface("org.freedesktop.Secret.Collection")?
            .build(),
        MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface("org.freedesktop.Secret.Service")?
            .build(),
        MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender("org.freedesktop.DBus")?
            .interface("org.freedesktop.DBus")?
            .member("NameOwnerChanged")?
            .arg(0, "org.freedesktop.secrets")?
            .build(),
    ];
    let mut streams = Vec::with_capacity(rules.len());
    for rule in rules {
        streams.push(MessageStream::for_match_rule(rule, &connection, None).await?);
    }
    Ok(stream::select_all(streams))
}

impl ChangeFeed for SignalFeed {
    fn mark(&self) -> Mark {
        Mark(if self.shared.is_watching() {
            MarkKind::Count(self.shared.generation.load(Ordering::Acquire))
        } else {
            MarkKind::At(Instant::now())
        })
    }

    fn changed_since(&self, mark: &Mark) -> bool {
        match mark.0 {
            MarkKind::Count(count) => {
                !self.shared.is_watching()
                    || self.shared.generation.load(Ordering::Acquire) != count
            }
            MarkKind::At(at) => at.elapsed() >= self.poll,
            _ => true,
        }
    }

    fn wait<'a>(&'a self, mark: &'a Mark) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Taken before the look, so that a signal between the two is not missed.
            let notified = self.shared.notify.notified();
            match mark.0 {
                MarkKind::Count(_) if !self.changed_since(mark) => notified.await,
                // Polling: the poll interval, or a signal once the subscription is in place.
                MarkKind::At(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until((at + self.poll).into()) => {}
                        () = notified => {}
                    }
                }
                _ => {}
            }
        })
    }

    fn is_watching(&self) -> bool {
        self.shared.is_watching()
    }
}

/// Two feeds as one (`auto`: the keyring item's signals and `auth.json`'s directory watch): a
/// change in either is a change; watching when both watch.
#[derive(Debug)]
pub(crate) struct Joined(
    pub(crate) Box<dyn ChangeFeed>,
    pub(crate) Box<dyn ChangeFeed>,
);

impl ChangeFeed for Joined {
    fn mark(&self) -> Mark {
        Mark(MarkKind::Both(
            Box::new(self.0.mark()),
            Box::new(self.1.mark()),
        ))
    }

    fn changed_since(&self, mark: &Mark) -> bool {
        match &mark.0 {
            MarkKind::Both(first, second) => {
                self.0.changed_since(first) || self.1.changed_since(second)
            }
            _ => true,
        }
    }

    fn wait<'a>(&'a self, mark: &'a Mark) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let MarkKind::Both(first, second) = &mark.0 {
                tokio::select! {
                    () = self.0.wait(first) => {}
                    () = self.1.wait(second) => {}
                }
            }
        })
    }

    fn is_watching(&self) -> bool {
        self.0.is_watching() && self.1.is_watching()
    }

    fn checks(&self) -> u64 {
        self.0.checks() + self.1.checks()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    use super::*;

    /// A private bus: `dbus-daemon --session` on a socket of its own, killed when dropped.
    struct PrivateBus {
        daemon: Child,
        address: String,
    }

    impl PrivateBus {
        /// `None` (the test skips) when dbus-daemon is not installed, unless the keyring
        /// tests are asked for.
        fn start() -> Option<Self> {
            let daemon = Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--print-address"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            let mut daemon = match daemon {
                Ok(daemon) => daemon,
                Err(error) => {
                    assert!(
                        std::env::var_os("AUTHSTORE_KEYRING_TESTS").is_none(),
                        "dbus-daemon: {error}"
                    );
                    eprintln!("skipped: dbus-daemon is not installed ({error})");
                    return None;
                }
            };
            let mut address = String::new();
            BufReader::new(daemon.stdout.take().unwrap())
                .read_line(&mut address)
                .unwrap();
            Some(Self {
                daemon,
                address: address.trim().to_owned(),
            })
        }

        /// Sends `ItemChanged` as a keyring daemon does.
        async fn item_changed(&self) {
            let connection = zbus::connection::Builder::address(self.address.as_str())
                .unwrap()
                .build()
                .await
                .unwrap();
            let item =
                zbus::zvariant::ObjectPath::try_from("/org/freedesktop/secrets/collection/login/1")
                    .unwrap();
            connection
                .emit_signal(
                    None::<()>,
                    "/org/freedesktop/secrets/collection/login",
                    "org.freedesktop.Secret.Collection",
                    "ItemChanged",
                    &(item,),
                )
                .await
                .unwrap();
        }
    }

    impl Drop for PrivateBus {
        fn drop(&mut self) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }

    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_signal_is_a_change_and_losing_the_bus_falls_back_to_polling_counted_as_a_change() {
        let Some(mut bus) = PrivateBus::start() else {
            return;
        };
        // A poll interval no waiter here could reach: what ends a wait is a signal.
        let poll = Duration::from_secs(3600);
        let feed = SignalFeed::start_on(Bus::At(bus.address.clone()), poll);
        assert!(feed.is_watching());
        let mark = feed.mark();
        assert!(matches!(mark.0, MarkKind::Count(_)));
        assert!(!feed.changed_since(&mark));

        let (woken, ()) = tokio::join!(
            tokio::time::timeout(BOUND, feed.wait(&mark)),
            bus.item_changed()
        );
        woken.expect("a signal wakes the waiter");
        assert!(feed.changed_since(&mark));
        assert_eq!(feed.checks(), 0);

        // The bus goes away: the feed polls from now on, and what was marked counts as changed.
        let mark = feed.mark();
        assert!(!feed.changed_since(&mark));
        bus.daemon.kill().unwrap();
        bus.daemon.wait().unwrap();
        tokio::time::timeout(BOUND, feed.wait(&mark))
            .await
            .expect("losing the bus wakes the waiter");
        assert!(feed.changed_since(&mark));
        assert!(!feed.is_watching());
        let polled = feed.mark();
        assert!(matches!(polled.0, MarkKind::At(_)));
        assert!(!feed.changed_since(&polled), "valid for the poll interval");
    }

    #[tokio::test]
    async fn no_bus_is_a_feed_that_polls() {
        let poll = Duration::from_millis(50);
        let feed = SignalFeed::start_on(
            Bus::At("unix:path=/nonexistent/authstore-no-bus".to_owned()),
            poll,
        );
        assert!(!feed.is_watching());
        let mark = feed.mark();
        assert!(!feed.changed_since(&mark));
        tokio::time::timeout(BOUND, feed.wait(&mark))
            .await
            .expect("a poll interval ends the wait");
        assert!(feed.changed_since(&mark));
    }

    /// The feed runs on its own thread: a caller with no tokio runtime can use it.
    #[test]
    fn the_feed_needs_no_runtime_of_its_callers() {
        let Some(bus) = PrivateBus::start() else {
            return;
        };
        let feed = SignalFeed::start_on(Bus::At(bus.address.clone()), Duration::from_secs(3600));
        assert!(feed.is_watching());
        let mark = feed.mark();
        assert!(!feed.changed_since(&mark));
        drop(feed);
    }
}
