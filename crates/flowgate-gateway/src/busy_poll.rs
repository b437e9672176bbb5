//! Busy polling after activity (`[server] busy_poll_us`).
//!
//! On a virtual machine whose guest does not poll before halting, waking an idle vCPU for a
//! packet costs tens of microseconds — more than the gateway's own work per request. While
//! requests arrived within the last `window`, a poller task keeps its runtime worker awake: it
//! yields in a loop, so the worker polls the I/O driver without blocking (tokio polls deferred
//! tasks' driver with a zero timeout) and sees the next request or upstream answer at once.
//! After a quiet `window` it sleeps until the next request touches it. The request path pays
//! one clock store and one flag load (`touch`). A worker blocked on the I/O driver would keep
//! the driver from the polling one, so the server runs one poller per runtime worker: the
//! feature costs up to every worker's core while traffic flows (off by default; see
//! docs/performance.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const NEVER: u64 = u64::MAX;

#[derive(Debug)]
pub struct BusyPoll {
    window_nanos: u64,
    origin: Instant,
    /// Nanoseconds after `origin` of the last request (`NEVER` before the first).
    last: AtomicU64,
    /// Set while the poller sleeps, so that `touch` wakes it.
    parked: AtomicBool,
    wake: Notify,
    /// Yields made by the pollers since start, added when each poller goes to sleep (a
    /// shared counter bumped per yield would bounce its cache line, and `last`'s, between
    /// the pollers and the requests).
    polls: AtomicU64,
}

impl BusyPoll {
    /// A zero window turns busy polling off (`touch` does nothing, `run` returns at once).
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(Self {
            window_nanos: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            origin: Instant::now(),
            last: AtomicU64::new(NEVER),
            parked: AtomicBool::new(false),
            wake: Notify::new(),
            polls: AtomicU64::new(0),
        })
    }

    /// Called by each request as it starts (`now` is its start instant).
    pub fn touch(&self, now: Instant) {
        if self.window_nanos == 0 {
            return;
        }
        self.last.store(self.nanos(now), Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    /// How many times the pollers had yielded to the I/O driver when they last went to sleep.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn active(&self) -> bool {
        let last = self.last.load(Ordering::SeqCst);
        last != NEVER && self.nanos(Instant::now()).saturating_sub(last) < self.window_nanos
    }

    /// The poller: spins while requests are recent, sleeps otherwise, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.window_nanos == 0 {
            return;
        }
        loop {
            let mut polls = 0;
            while self.active() {
                if stop.is_cancelled() {
                    return;
                }
                polls += 1;
                tokio::task::yield_now().await;
            }
            self.polls.fetch_add(polls, Ordering::Relaxed);
            self.parked.store(true, Ordering::SeqCst);
            // A request that touched between the last check and `parked` is seen here; one
            // after it sees `parked` and wakes us (Notify keeps the permit).
            if !self.active() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = stop.cancelled() => return,
                }
            }
            self.parked.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn start(
        window: Duration,
    ) -> (
        Arc<BusyPoll>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let poll = BusyPoll::new(window);
        let stop = CancellationToken::new();
        let task = tokio::spawn(Arc::clone(&poll).run(stop.clone()));
        (poll, stop, task)
    }

    async fn polls_during(poll: &BusyPoll, span: Duration) -> u64 {
        let before = poll.polls();
        tokio::time::sleep(span).await;
        poll.polls() - before
    }

    #[tokio::test]
    async fn a_zero_window_never_polls() {
        let (poll, _stop, task) = start(Duration::ZERO);
        poll.touch(Instant::now());
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the poller returns at once")
            .expect("poller task");
        assert_eq!(poll.polls(), 0);
    }

    #[tokio::test]
    async fn polls_after_a_request_then_sleeps_until_the_next() {
        let (poll, stop, task) = start(Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(poll.polls(), 0, "nothing touched it yet");

        // Polls through the window, then sleeps: well past it, nothing more.
        poll.touch(Instant::now());
        assert!(polls_during(&poll, Duration::from_millis(150)).await > 0);
        assert_eq!(polls_during(&poll, Duration::from_millis(100)).await, 0);

        poll.touch(Instant::now());
        assert!(polls_during(&poll, Duration::from_millis(150)).await > 0);
        poll.touch(Instant::now());

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the poller stops while polling")
            .expect("poller task");
    }

    #[tokio::test]
    async fn io_on_the_same_worker_goes_on_while_it_polls() {
        let (poll, stop, task) = start(Duration::from_millis(300));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let echo = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).await.expect("read");
            socket.write_all(&byte).await.expect("write");
        });
        poll.touch(Instant::now());
        let exchange = async {
            let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            client.write_all(b"x").await.expect("write");
            let mut byte = [0u8; 1];
            client.read_exact(&mut byte).await.expect("read");
            byte
        };
        let byte = tokio::time::timeout(Duration::from_secs(2), exchange)
            .await
            .expect("the exchange completes while the poller spins");
        assert_eq!(&byte, b"x");
        echo.await.expect("echo task");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(poll.polls() > 0, "the exchange happened while polling");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the poller stops")
            .expect("poller task");
    }
}
