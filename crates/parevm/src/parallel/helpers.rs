//! Helper workers that a block asks a thread pool for but does not wait to start.
//!
//! A block's parallel phase runs on the calling thread and on `n - 1` threads of the
//! [`crate::Executor`]'s pool. Waking a sleeping pool thread takes tens to hundreds of
//! microseconds on a virtual machine, and a scoped spawn (`rayon::in_place_scope`) makes the
//! caller wait until every spawned job has run — on a small block, longer than the block
//! itself. Block-STM's workers are collaborative: any number of them, arriving at any time,
//! finish the block. So the caller does not need the helpers: [`run`] hands them out, works,
//! and when its own work is done waits only for the helpers that have *started*. A helper
//! that starts after that returns without touching the block.
//!
//! Invariant (what makes the borrow sound): a helper dereferences the block's shared state
//! only between a successful [`Gate::enter`] and its [`Gate::leave`], and [`run`] returns
//! only after [`Gate::close`] (after which no `enter` succeeds) has seen no helper inside.
//! Both are read-modify-writes of one atomic word, so they are totally ordered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam::utils::Backoff;

/// Work that the calling thread and any number of helpers share.
pub(crate) trait Work: Sync {
    /// Runs one worker until the work is done; `first` for the calling thread. Must not
    /// unwind (catch panics inside).
    fn work(&self, first: bool);
}

/// The bit of [`Gate`]'s word that closes it; the other bits count helpers inside.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// Counts the helpers inside the work, and refuses new ones once closed.
#[derive(Default)]
struct Gate(AtomicUsize);

impl Gate {
    /// Enters, unless the gate is closed.
    fn enter(&self) -> bool {
        if self.0.fetch_add(1, Ordering::AcqRel) & CLOSED == 0 {
            return true;
        }
        self.0.fetch_sub(1, Ordering::AcqRel);
        false
    }

    fn leave(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }

    /// Closes the gate and waits until no helper is inside.
    fn close(&self) {
        let mut inside = self.0.fetch_or(CLOSED, Ordering::AcqRel) & !CLOSED;
        // A helper inside is building its share of the state or finishing its last task:
        // short.
        let backoff = Backoff::new();
        while inside != 0 {
            backoff.snooze();
            inside = self.0.load(Ordering::Acquire) & !CLOSED;
        }
    }
}

/// Leaves the gate when dropped.
struct Inside<'g>(&'g Gate);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Closes the gate when dropped, so that even an unwinding caller waits for the helpers.
struct Closing<'g>(&'g Gate);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// One helper's job: the work behind an erased pointer, so that the job can be `'static`.
struct Job {
    gate: Arc<Gate>,
    work: *const (),
    run: unsafe fn(*const ()),
}

// SAFETY: `work` points to a `W: Work`, which is `Sync`; it is only dereferenced inside the
// gate (see the module's invariant).
unsafe impl Send for Job {}

impl Job {
    fn run(self) {
        if !self.gate.enter() {
            return;
        }
        let _inside = Inside(&self.gate);
        // SAFETY: the gate was open when this helper entered, so `run` has not returned and
        // the work it borrows is alive until `_inside` leaves.
        unsafe { (self.run)(self.work) }
    }
}

/// # Safety
/// `work` must point to a live `W`.
unsafe fn run_helper<W: Work>(work: *const ()) {
    // SAFETY: the caller's contract.
    unsafe { (*work.cast::<W>()).work(false) }
}

/// Runs `work` on the calling thread and on up to `helpers` threads of `pool`. Returns when
/// the calling thread's share is done and every helper that started has finished; helpers
/// that start later do nothing.
pub(crate) fn run<W: Work>(pool: &rayon::ThreadPool, helpers: usize, work: &W) {
    let gate = Arc::new(Gate::default());
    let closing = Closing(&gate);
    for _ in 0..helpers {
        let job =
            Job { gate: Arc::clone(&gate), work: (work as *const W).cast(), run: run_helper::<W> };
        pool.spawn(move || job.run());
    }
    work.work(true);
    drop(closing);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Barrier;
    use std::time::Duration;

    /// Counts the workers that ran; a helper may wait on `hold` before it finishes.
    struct Counting {
        ran: AtomicUsize,
        helpers_done: AtomicUsize,
        hold: Option<Barrier>,
    }

    impl Work for Counting {
        fn work(&self, first: bool) {
            self.ran.fetch_add(1, Ordering::SeqCst);
            if !first {
                if let Some(hold) = &self.hold {
                    hold.wait();
                    std::thread::sleep(Duration::from_millis(20));
                }
                self.helpers_done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    #[test]
    fn a_helper_that_starts_late_does_nothing() {
        let pool = pool(1);
        // Keep the pool's only thread busy until the work below has returned.
        let release = Arc::new(AtomicBool::new(false));
        let busy = Arc::clone(&release);
        pool.spawn(move || {
            while !busy.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        });
        let work =
            Box::new(Counting { ran: AtomicUsize::new(0), helpers_done: 0.into(), hold: None });
        run(&pool, 1, &*work);
        assert_eq!(work.ran.load(Ordering::SeqCst), 1, "only the calling thread ran");
        // Freed: a late helper that still dereferenced it would read freed memory.
        drop(work);
        release.store(true, Ordering::SeqCst);
        // The late job runs now, against a closed gate: it must not touch the dropped work.
        pool.install(|| {});
        std::thread::sleep(Duration::from_millis(20));
    }

    #[test]
    fn a_helper_that_started_is_waited_for() {
        let pool = pool(1);
        // The calling thread meets the helper inside the work, then finishes first.
        struct Meeting(Counting);
        impl Work for Meeting {
            fn work(&self, first: bool) {
                if first {
                    self.0.hold.as_ref().unwrap().wait();
                    self.0.ran.fetch_add(1, Ordering::SeqCst);
                } else {
                    self.0.work(false);
                }
            }
        }
        let work = Meeting(Counting {
            ran: AtomicUsize::new(0),
            helpers_done: 0.into(),
            hold: Some(Barrier::new(2)),
        });
        run(&pool, 1, &work);
        assert_eq!(work.0.ran.load(Ordering::SeqCst), 2);
        assert_eq!(work.0.helpers_done.load(Ordering::SeqCst), 1, "run waited for the helper");
    }

    #[test]
    fn many_blocks_many_helpers() {
        let pool = pool(3);
        for _ in 0..200 {
            let work = Counting { ran: AtomicUsize::new(0), helpers_done: 0.into(), hold: None };
            run(&pool, 3, &work);
            let ran = work.ran.load(Ordering::SeqCst);
            assert!((1..=4).contains(&ran), "{ran} workers");
            // Every helper that ran finished before `run` returned.
            assert_eq!(work.helpers_done.load(Ordering::SeqCst), ran - 1);
        }
    }
}
