//! The host's timer thread and its workers. The thread keeps the jobs
//! that wait for a time (a guest timer coming due) and runs each at its
//! time, on itself: such a job only hands work on and never blocks. Work
//! that may block (a guest timer's callback, a completion deferred out of
//! a release) runs on a small pool of workers, at most [`WORKERS`], started
//! as they are needed and kept until the runtime ends. So a slow callback
//! holds up one worker, never the clock, and never more than one worker
//! per domain (the domain's runner in `domain/timers.rs` sees to that).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// The most workers the pool runs: as many domains' callbacks can run at
/// once; a callback of a fifth domain waits for the first of them to end.
pub(crate) const WORKERS: usize = 4;

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

/// The jobs waiting for their time.
#[derive(Default)]
struct Clock {
    jobs: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    started: bool,
    stopping: bool,
}

/// The jobs waiting for a worker, and the workers.
#[derive(Default)]
struct Pool {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
    workers: usize,
    stopping: bool,
}

/// The timer thread's clock and its pool of workers.
#[derive(Default)]
pub(crate) struct TimerThread {
    clock: Mutex<Clock>,
    tick: Condvar,
    pool: Mutex<Pool>,
    work: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TimerThread {
    /// Runs `job` on the timer thread at `due` (at once if it is past).
    /// It must not block: anything that may wait goes to
    /// [`dispatch`](Self::dispatch).
    pub(crate) fn schedule(self: &Arc<Self>, due: Instant, job: impl FnOnce() + Send + 'static) {
        let mut clock = lock(&self.clock);
        if clock.stopping {
            return;
        }
        clock.seq += 1;
        let seq = clock.seq;
        clock.jobs.push(Reverse(Entry {
            due,
            seq,
            job: Box::new(job),
        }));
        if !clock.started {
            let me = Arc::clone(self);
            clock.started = std::thread::Builder::new()
                .name("custody-timers".into())
                .spawn(move || me.run_clock())
                .is_ok();
        }
        drop(clock);
        self.tick.notify_one();
    }

    /// Runs `job` on a worker as soon as one is free: an idle one, else a
    /// new one while there are fewer than [`WORKERS`], else the first to
    /// finish its job (jobs start in the order they came).
    pub(crate) fn dispatch(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) {
        let mut pool = lock(&self.pool);
        if pool.stopping {
            return;
        }
        pool.jobs.push_back(Box::new(job));
        // Each idle worker takes one job; a job beyond them needs a new one.
        if pool.jobs.len() > pool.idle && pool.workers < WORKERS {
            let me = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("custody-timer-worker".into())
                .spawn(move || me.work());
            if spawned.is_ok() {
                pool.workers += 1;
            }
        }
        drop(pool);
        self.work.notify_one();
    }

    fn run_clock(&self) {
        let mut clock = lock(&self.clock);
        loop {
            if clock.stopping {
                return;
            }
            let now = Instant::now();
            match clock.jobs.peek() {
                Some(Reverse(next)) if next.due <= now => {
                    let Some(Reverse(entry)) = clock.jobs.pop() else {
                        continue;
                    };
                    drop(clock);
                    (entry.job)();
                    clock = lock(&self.clock);
                }
                Some(Reverse(next)) => {
                    let wait = next.due - now;
                    clock = self
                        .tick
                        .wait_timeout(clock, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => {
                    clock = self
                        .tick
                        .wait(clock)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    fn work(&self) {
        // A job that panics ends its worker: the pool counts it out, and
        // the next dispatch starts another.
        struct Leaving<'a>(&'a TimerThread);
        impl Drop for Leaving<'_> {
            fn drop(&mut self) {
                lock(&self.0.pool).workers -= 1;
            }
        }
        let _leaving = Leaving(self);
        let mut pool = lock(&self.pool);
        loop {
            if pool.stopping {
                return;
            }
            if let Some(job) = pool.jobs.pop_front() {
                drop(pool);
                job();
                pool = lock(&self.pool);
                continue;
            }
            pool.idle += 1;
            pool = self.work.wait(pool).unwrap_or_else(PoisonError::into_inner);
            pool.idle -= 1;
        }
    }

    /// Stops the thread and the workers (each after the job it runs); jobs
    /// not yet run are dropped.
    pub(crate) fn stop(&self) {
        let mut clock = lock(&self.clock);
        clock.stopping = true;
        let due = std::mem::take(&mut clock.jobs);
        drop(clock);
        let mut pool = lock(&self.pool);
        pool.stopping = true;
        let queued = std::mem::take(&mut pool.jobs);
        drop(pool);
        // Dropped outside the locks: a job may hold the last reference to
        // something whose drop schedules more.
        drop((due, queued));
        self.tick.notify_all();
        self.work.notify_all();
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

    #[test]
    fn a_blocked_worker_holds_up_no_other_job_and_the_pool_is_bounded() {
        let timers = Arc::new(TimerThread::default());
        let (release, blocked) = mpsc::channel::<()>();
        let blocked = Arc::new(Mutex::new(blocked));
        let (tx, rx) = mpsc::channel();
        // Every worker but one blocks.
        for _ in 0..WORKERS - 1 {
            let blocked = Arc::clone(&blocked);
            timers.dispatch(move || {
                let _ = blocked.lock().unwrap().recv();
            });
        }
        // A job that comes due meanwhile still runs on the last worker,
        // and the clock keeps time.
        let tx2 = tx.clone();
        let due = Instant::now() + Duration::from_millis(10);
        timers.schedule(due, {
            let timers = Arc::clone(&timers);
            move || timers.dispatch(move || tx2.send(Instant::now()).unwrap())
        });
        let ran = rx.recv_timeout(Duration::from_secs(5)).expect("it ran");
        assert!(ran >= due);
        assert_eq!(lock(&timers.pool).workers, WORKERS);
        // With every worker blocked, a job waits for the first to finish.
        let blocked_all = Arc::clone(&blocked);
        timers.dispatch(move || {
            let _ = blocked_all.lock().unwrap().recv();
        });
        timers.dispatch(move || tx.send(Instant::now()).unwrap());
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        assert_eq!(lock(&timers.pool).workers, WORKERS, "no more workers");
        release.send(()).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        for _ in 0..WORKERS {
            let _ = release.send(());
        }
        timers.stop();
    }
}
