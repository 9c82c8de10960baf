//! Guest timers (SPEC D6), the domain's side. Arming one takes a root
//! (described with the guest stack that armed it) and puts it on the
//! host's timer thread. When it comes due, the timer thread adds it to the
//! domain's due timers and hands the domain's *runner* to the timer
//! workers; the runner runs the due callbacks one at a time, each an
//! ordinary call (serialized with the others, under the deadline, escalated
//! by the policy, let in during a cooperative unload). Disarming gives the
//! root back.
//!
//! # Fairness
//! One domain never holds up another's timers:
//! - the runner never waits for the store: if a call holds it, the runner
//!   *parks* and whoever gives the store back sends it to the workers again
//!   ([`DomainTimers::store_released`]), so a busy domain holds no worker;
//! - a domain has one runner, so its callbacks take at most one worker at a
//!   time, however many timers it arms, and after each callback the runner
//!   goes to the back of the workers' queue;
//! - a periodic timer's next due time is counted from the end of its
//!   callback, so it is never due twice at once: a slow callback (or a
//!   long call) makes it skip, never pile up;
//! - delays and periods below the policy's `timer_min_period` are raised
//!   to it (`abi/timers.rs`).
//!
//! So a callback starts as soon as it is due, unless its own domain is
//! busy (then as soon as that call ends) or every worker runs another
//! domain's callback (then when the first of those ends, each bounded by
//! its domain's deadline).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering, fence};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use wasmtime::Val;

use super::roots::{RootKind, RootRecord};
use super::state::{Admit, Next};
use super::store_guard::StoreGuard;
use super::{Domain, DomainShared, lock, unload};
use crate::boundary::errno::AbiError;
use crate::boundary::timer::{Armed, Timer, TimerSpec, Timers};
use crate::runtime::timer_thread::TimerThread;

/// The runner is neither queued nor running.
const IDLE: u8 = 0;
/// The runner is queued for a worker, or running.
const SUBMITTED: u8 = 1;
/// The runner found the store held and left: whoever gives the store back
/// submits it again.
const PARKED: u8 = 2;

/// One armed timer as the domain schedules it.
struct Scheduled {
    armed: Arc<Armed>,
    export: Arc<str>,
    period: Option<Duration>,
}

/// A domain's timers: its [`Timers`] (given to its store), its due timers
/// and their runner.
pub(crate) struct DomainTimers {
    shared: Weak<DomainShared>,
    thread: Arc<TimerThread>,
    /// Timers that came due, in the order they did.
    due: Mutex<VecDeque<Arc<Scheduled>>>,
    /// [`IDLE`], [`SUBMITTED`] or [`PARKED`].
    runner: AtomicU8,
    /// Whether a timer was ever armed: until one is, giving the store back
    /// costs one load.
    used: AtomicBool,
    me: Weak<DomainTimers>,
}

impl DomainTimers {
    /// The timers of the domain `shared`, run on `thread`.
    pub(crate) fn new(shared: Weak<DomainShared>, thread: Arc<TimerThread>) -> Arc<Self> {
        Arc::new_cyclic(|me| DomainTimers {
            shared,
            thread,
            due: Mutex::default(),
            runner: AtomicU8::new(IDLE),
            used: AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// The store was given back: a parked runner goes to the workers.
    ///
    /// A runner parks by storing [`PARKED`], a fence, and trying the store
    /// once more; a holder gives the store back (the state word's RMW that
    /// clears `STORE_HELD`), a fence, and loads the runner. With the two `SeqCst` fences, one of
    /// them sees the other: the runner finds the store free, or the holder
    /// finds it parked. `used` is set while a call holds the store (a guest
    /// arms a timer only inside a call), so every later holder sees it.
    pub(crate) fn store_released(&self) {
        if !self.used.load(Ordering::Relaxed) {
            return;
        }
        fence(Ordering::SeqCst);
        if self.runner.load(Ordering::Relaxed) == PARKED
            && self
                .runner
                .compare_exchange(PARKED, SUBMITTED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.submit();
        }
    }

    /// Hands the runner to the workers (its state is `SUBMITTED`).
    fn submit(&self) {
        if let Some(me) = self.me.upgrade() {
            self.thread.dispatch(move || me.run());
        }
    }

    /// Schedules `timer` to come due at `due`. On the timer thread, it
    /// joins the due timers and the runner is submitted if it is idle:
    /// nothing there waits.
    fn schedule(&self, timer: Arc<Scheduled>, due: Instant) {
        let me = self.me.clone();
        self.thread.schedule(due, move || {
            let Some(me) = me.upgrade() else { return };
            if timer.armed.is_disarmed() {
                return;
            }
            if timer.armed.id.get().is_none() {
                // Its handle is being made: try again in a moment.
                return me.schedule(timer, Instant::now() + Duration::from_millis(1));
            }
            let mut due = lock(&me.due);
            due.push_back(timer);
            if me
                .runner
                .compare_exchange(IDLE, SUBMITTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                drop(due);
                me.submit();
            }
        });
    }

    /// The runner's turn, on a worker: one due callback, then the back of
    /// the queue if more are due.
    fn run(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let Some(guard) = self.take_store(&shared) else {
            return; // parked
        };
        let next = loop {
            match lock(&self.due).pop_front() {
                Some(timer) if timer.armed.is_disarmed() => continue,
                next => break next,
            }
        };
        if let Some(timer) = next {
            self.callback(&shared, guard, &timer);
        } else {
            drop(guard);
        }
        let due = lock(&self.due);
        if due.is_empty() {
            // Under the lock: a timer coming due after this finds it idle.
            self.runner.store(IDLE, Ordering::Release);
        } else {
            drop(due);
            self.submit();
        }
    }

    /// The store if it is free; else parks the runner (`None`).
    fn take_store<'a>(&self, shared: &'a DomainShared) -> Option<StoreGuard<'a>> {
        if let Some(guard) = shared.try_lock() {
            return Some(guard);
        }
        self.runner.store(PARKED, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let guard = shared.try_lock()?;
        // Freed meanwhile: unpark, unless the holder already resubmitted
        // (then that runner goes on, and this guard's drop does nothing).
        self.runner
            .compare_exchange(PARKED, SUBMITTED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            .then_some(guard)
    }

    /// Runs `timer`'s callback with the store held, then schedules its
    /// next turn (a periodic timer, counted from the callback's end) or
    /// disarms it (a one-shot timer that fired is a root no more; its
    /// handle stays until the guest closes it).
    fn callback(&self, shared: &Arc<DomainShared>, guard: StoreGuard<'_>, timer: &Arc<Scheduled>) {
        // A domain that is ending (forced, completing, gone) runs no more.
        if shared.state().acquire_root(Admit::WhileUnloading).is_err() {
            return;
        }
        let id = timer.armed.id.get().copied().unwrap_or_default();
        let _ = Domain::call_rooted(shared, guard, &timer.export, &[Val::I32(id as i32)]);
        match timer.period {
            Some(period) if !timer.armed.is_disarmed() => {
                self.schedule(Arc::clone(timer), crate::deadline::after(period));
            }
            _ => timer.armed.disarm(),
        }
    }
}

impl Timers for DomainTimers {
    fn arm(&self, spec: TimerSpec) -> Result<Timer, AbiError> {
        let shared = self.shared.upgrade().ok_or(AbiError::Aborted)?;
        // Not while unloading: a timer armed by the unloading hook would
        // hold up the unload it is part of.
        shared
            .state()
            .acquire_root(Admit::Running)
            .map_err(|_| AbiError::Denied)?;
        self.used.store(true, Ordering::Relaxed);
        let mut record = RootRecord::with_origin(
            RootKind::Timer,
            spec.export.clone(),
            "guest timer",
            spec.stack,
        );
        record.detail = Some(match spec.period {
            Some(p) => format!("first due in {:?}, then every {p:?}", spec.delay),
            None => format!("due in {:?}", spec.delay),
        });
        let key = shared.roots.add(record);
        let (weak, thread) = (Arc::downgrade(&shared), Arc::clone(&self.thread));
        let armed = Arc::new(Armed::new(Box::new(move || {
            let Some(shared) = weak.upgrade() else { return };
            shared.roots.remove(key);
            if shared.state().release_root() == Next::Complete {
                // This runs inside a close, perhaps under the store's lock:
                // the completion is a worker's.
                thread.dispatch(move || unload::complete(&shared));
            }
        })));
        let timer = Arc::new(Scheduled {
            armed: Arc::clone(&armed),
            export: Arc::from(spec.export),
            period: spec.period,
        });
        self.schedule(timer, crate::deadline::after(spec.delay));
        Ok(Timer(armed))
    }
}
