//! The journal's store thread runs in the background: in the kernel's idle scheduling class
//! (`SCHED_IDLE`) while it keeps up, so that on a busy core a request never waits behind a
//! store transaction (the request's record is already durable in the journal), and back at
//! normal priority while it falls behind, so that it can never starve (the request path
//! promotes it once the journal holds more than it should; the thread demotes itself once it
//! has caught up). Linux lets a thread leave the idle class only with `CAP_SYS_NICE` or a
//! sufficient `RLIMIT_NICE`: `probe` checks at start, and without either the thread stays at
//! normal priority and stores in small batches.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thread_priority::ThreadPriority;
use thread_priority::unix::{
    NormalThreadSchedulePolicy, ThreadId, ThreadSchedulePolicy, set_thread_priority_and_policy,
    thread_native_id,
};

/// How long journaled records wait for the store at most at normal priority: a store
/// transaction then interrupts requests on the same core, so it stays small (at 2,000
/// requests/s a few dozen records).
const STORE_EVERY: Duration = Duration::from_millis(5);
/// The same in the background: ten times fewer transactions (and journal segments) for the
/// same records, since a longer one no longer delays requests.
const BACKGROUND_STORE_EVERY: Duration = Duration::from_millis(50);

const IDLE: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
const NORMAL: ThreadSchedulePolicy =
    ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);

/// The store thread's scheduling class.
#[derive(Debug)]
pub(super) struct Background {
    /// Whether this process can take a thread out of the idle class again.
    capable: bool,
    /// The store thread, once it has started.
    thread: OnceLock<ThreadId>,
    /// Whether the store thread is in the idle class now. `enter` sets the class before the
    /// flag and `promote` clears the flag before the class: whatever their interleaving, a
    /// false flag means normal priority (a thread left idle always has the flag set, so the
    /// next promotion reaches it).
    idle: AtomicBool,
}

fn set(thread: ThreadId, policy: ThreadSchedulePolicy) -> bool {
    set_thread_priority_and_policy(thread, ThreadPriority::Min, policy).is_ok()
}

impl Background {
    /// Whether a thread of this process can enter the idle class and leave it again: tried
    /// on a short-lived thread.
    pub fn probe() -> Self {
        let capable = std::thread::Builder::new()
            .name("flowgate-probe".to_owned())
            .spawn(|| {
                let thread = thread_native_id();
                set(thread, IDLE) && set(thread, NORMAL)
            })
            .ok()
            .and_then(|probe| probe.join().ok())
            .unwrap_or(false);
        if !capable {
            tracing::info!(
                "the audit store thread runs at normal priority: leaving the idle scheduling class needs CAP_SYS_NICE or RLIMIT_NICE"
            );
        }
        Self::new(capable)
    }

    /// At normal priority throughout (as without the capability).
    pub fn normal() -> Self {
        Self::new(false)
    }

    fn new(capable: bool) -> Self {
        Self {
            capable,
            thread: OnceLock::new(),
            idle: AtomicBool::new(false),
        }
    }

    /// How long the store thread lets journaled records gather.
    pub fn period(&self) -> Duration {
        if self.capable {
            BACKGROUND_STORE_EVERY
        } else {
            STORE_EVERY
        }
    }

    /// On the store thread: into the idle class (the first call names the thread promoted
    /// later). Called at start and whenever it has caught up.
    pub fn enter(&self) {
        let thread = *self.thread.get_or_init(thread_native_id);
        if self.capable && !self.idle.load(Ordering::Acquire) && set(thread, IDLE) {
            self.idle.store(true, Ordering::Release);
        }
    }

    /// The store thread has fallen behind: normal priority until it has caught up. From any
    /// thread; one atomic load unless it is in the idle class.
    pub fn promote(&self) {
        if self.idle.load(Ordering::Acquire)
            && let Some(&thread) = self.thread.get()
            && self.idle.swap(false, Ordering::AcqRel)
            && !set(thread, NORMAL)
        {
            tracing::warn!("the audit store thread could not leave the idle scheduling class");
        }
    }

    /// Whether the store thread is in the idle class now.
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;
    use thread_priority::unix::thread_schedule_policy;

    /// Runs `steps` on a thread of its own, each step answering with that thread's policy as
    /// the kernel reports it, after `between` ran on the test thread.
    fn on_store_thread(
        background: &Arc<Background>,
        between: impl Fn(&Background, usize),
        steps: usize,
    ) -> Vec<ThreadSchedulePolicy> {
        let (go, wait) = mpsc::channel::<bool>();
        let (report, reports) = mpsc::channel();
        let thread = {
            let background = Arc::clone(background);
            std::thread::spawn(move || {
                while let Ok(enter) = wait.recv() {
                    if enter {
                        background.enter();
                    }
                    report
                        .send(thread_schedule_policy().expect("policy"))
                        .expect("report");
                }
            })
        };
        let mut seen = Vec::new();
        for step in 0..steps {
            between(background, step);
            go.send(step % 2 == 0).expect("go");
            seen.push(reports.recv().expect("report"));
        }
        drop(go);
        thread.join().expect("store thread");
        seen
    }

    #[test]
    fn the_store_thread_is_idle_until_promoted_and_idle_again_when_it_enters() {
        let background = Arc::new(Background::probe());
        // These tests run as root (CI): the capability is there.
        assert!(background.capable, "probe found no CAP_SYS_NICE as root");
        assert_eq!(background.period(), BACKGROUND_STORE_EVERY);
        // Steps: enter; promoted by the test thread; enter again; promoted again (a second
        // promotion of a thread already at normal priority is a no-op, then entering works).
        let seen = on_store_thread(
            &background,
            |background, step| {
                if step % 2 == 1 {
                    background.promote();
                    background.promote();
                }
            },
            4,
        );
        assert_eq!(seen, vec![IDLE, NORMAL, IDLE, NORMAL]);
        assert!(!background.is_idle());
    }

    #[test]
    fn without_the_capability_the_store_thread_stays_at_normal_priority() {
        let background = Arc::new(Background::normal());
        assert_eq!(background.period(), STORE_EVERY);
        let seen = on_store_thread(&background, |background, _| background.promote(), 2);
        assert_eq!(seen, vec![NORMAL, NORMAL]);
        assert!(!background.is_idle());
    }

    #[test]
    fn promoting_before_the_thread_started_does_nothing() {
        let background = Background::probe();
        background.promote();
        assert!(!background.is_idle());
        assert!(background.thread.get().is_none());
    }
}
