//! The host's timer thread: runs jobs at their due time (guest timer
//! callbacks, and completions deferred out of a release). Started at the
//! first job; ends with the runtime. A job runs on this thread, so a timer
//! callback into a busy domain waits for that domain's call to end; jobs of
//! different domains run one after another.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

type Job = Box<dyn FnOnce() + Send>;

struct Entry {
    due: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    jobs: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    started: bool,
    stopping: bool,
}

/// The timer thread's queue.
#[derive(Default)]
pub(crate) struct TimerThread {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl TimerThread {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` on the timer thread at `due` (at once if it is past).
    pub(crate) fn schedule(self: &Arc<Self>, due: Instant, job: impl FnOnce() + Send + 'static) {
        let mut queue = self.lock();
        if queue.stopping {
            return;
        }
        queue.seq += 1;
        let seq = queue.seq;
        queue.jobs.push(Reverse(Entry {
            due,
            seq,
            job: Box::new(job),
        }));
        if !queue.started {
            queue.started = true;
            let me = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("custody-timers".into())
                .spawn(move || me.run());
            if spawned.is_err() {
                queue.started = false;
            }
        }
        drop(queue);
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut queue = self.lock();
        loop {
            if queue.stopping {
                return;
            }
            let now = Instant::now();
            match queue.jobs.peek() {
                Some(Reverse(next)) if next.due <= now => {
                    let Some(Reverse(entry)) = queue.jobs.pop() else {
                        continue;
                    };
                    drop(queue);
                    (entry.job)();
                    queue = self.lock();
                }
                Some(Reverse(next)) => {
                    let wait = next.due - now;
                    queue = self
                        .wake
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => {
                    queue = self
                        .wake
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    /// Stops the thread; jobs not yet run are dropped.
    pub(crate) fn stop(&self) {
        let mut queue = self.lock();
        queue.stopping = true;
        queue.jobs.clear();
        drop(queue);
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn jobs_run_in_due_order() {
        let timers = Arc::new(TimerThread::default());
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        for (ms, tag) in [(30, 3), (10, 1), (20, 2)] {
            let tx = tx.clone();
            timers.schedule(now + Duration::from_millis(ms), move || {
                tx.send(tag).unwrap()
            });
        }
        let got: Vec<i32> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(got, [1, 2, 3]);
        assert!(now.elapsed() >= Duration::from_millis(30));
        timers.stop();
    }
}
