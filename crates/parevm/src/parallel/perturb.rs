//! Scheduling perturbation for stress runs (feature `perturb`): at the points where workers
//! race, pause at random (yield, spin or sleep), so that stress runs explore interleavings a
//! quiet machine would rarely produce. Without the feature every call compiles to nothing.

#[cfg(feature = "perturb")]
mod enabled {
    use std::cell::Cell;

    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }

    /// Seeds this thread's perturbation (0 disables it).
    pub(crate) fn seed(seed: u64) {
        STATE.with(|s| s.set(seed));
    }

    /// A possible pause.
    pub(crate) fn point() {
        let roll = STATE.with(|s| {
            let mut x = s.get();
            if x == 0 {
                return None;
            }
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            Some(x)
        });
        let Some(roll) = roll else { return };
        match roll % 64 {
            0..=11 => std::thread::yield_now(),
            12..=15 => {
                for _ in 0..(roll >> 20) % 4096 {
                    std::hint::spin_loop();
                }
            }
            16 => std::thread::sleep(std::time::Duration::from_micros((roll >> 30) % 200)),
            _ => {}
        }
    }
}

#[cfg(feature = "perturb")]
pub(crate) use enabled::{point, seed};

/// A possible pause (nothing without the `perturb` feature).
#[cfg(not(feature = "perturb"))]
#[inline(always)]
pub(crate) fn point() {}
