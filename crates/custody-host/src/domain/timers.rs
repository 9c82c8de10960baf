//! Guest timers (SPEC D6), the domain's side: arming one takes a root
//! (described with the guest stack that armed it) and schedules its
//! callbacks on the host's timer thread; each callback is an ordinary call
//! (serialized with the others, under the deadline, escalated by the
//! policy), let in during a cooperative unload; disarming gives the root
//! back.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use wasmtime::Val;

use super::roots::{RootKind, RootRecord};
use super::state::{Admit, Next};
use super::{Domain, DomainShared, unload};
use crate::boundary::errno::AbiError;
use crate::boundary::timer::{Armed, TimerHandle, TimerSpec, Timers};
use crate::runtime::timer_thread::TimerThread;

/// A domain's [`Timers`], given to its store.
pub(crate) struct DomainTimers {
    pub(crate) shared: Weak<DomainShared>,
    pub(crate) thread: Arc<TimerThread>,
}

impl Timers for DomainTimers {
    fn arm(&self, spec: TimerSpec) -> Result<TimerHandle, AbiError> {
        let shared = self.shared.upgrade().ok_or(AbiError::Aborted)?;
        // Not while unloading: a timer armed by the unloading hook would
        // hold up the unload it is part of.
        shared
            .state
            .acquire_root(Admit::Running)
            .map_err(|_| AbiError::Denied)?;
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
            if shared.state.release_root() == Next::Complete {
                // This runs inside a close, perhaps under the store's lock:
                // the completion is the timer thread's.
                thread.schedule(Instant::now(), move || unload::complete(&shared));
            }
        })));
        schedule(
            &self.thread,
            Arc::downgrade(&shared),
            Arc::clone(&armed),
            Arc::from(spec.export),
            Instant::now() + spec.delay,
            spec.period,
        );
        Ok(TimerHandle(armed))
    }
}

/// Schedules the next callback of `armed`.
fn schedule(
    thread: &Arc<TimerThread>,
    domain: Weak<DomainShared>,
    armed: Arc<Armed>,
    export: Arc<str>,
    due: Instant,
    period: Option<Duration>,
) {
    let again = Arc::clone(thread);
    thread.schedule(due, move || {
        if armed.is_disarmed() {
            return;
        }
        let Some(shared) = domain.upgrade() else {
            return;
        };
        let Some(&id) = armed.id.get() else {
            // Its handle is being made: try again in a moment.
            let next = Instant::now() + Duration::from_millis(1);
            return schedule(&again, domain, armed, export, next, period);
        };
        let _ = Domain::call_shared(
            &shared,
            &export,
            &[Val::I32(id as i32)],
            Admit::WhileUnloading,
        );
        match period {
            Some(period) if !armed.is_disarmed() => {
                let next = Instant::now() + period;
                schedule(&again, domain, armed, export, next, Some(period));
            }
            // A one-shot timer that fired is armed no more: it stops being a
            // root (its handle stays until the guest closes it).
            _ => armed.disarm(),
        }
    });
}
