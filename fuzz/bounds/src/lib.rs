//! # secllama-fuzz-bounds — the bounds every fuzz target decides its inputs under
//!
//! [`decided`] runs one input under the bounds issue 16 asks of every parser that takes untrusted
//! bytes: the input is decided within a time that scales with its length, and the memory it makes
//! the parser hold at once, and allocate in all, scales with its length too. A small input that
//! causes megabytes of allocation or seconds of work is a finding, like a crash. The bounds are
//! counted by this crate's global allocator (armed only while an input is decided, so libFuzzer's
//! own allocations are not counted) and the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`: time
//! the input was worked on, not time the machine spent on other jobs).
//!
//! The bounds are deliberately loose (a parser that copies its input a few times, builds a value
//! tree or hashes it is well inside) so that only a change of complexity trips them:
//!
//! | bound | fixed part | per input byte |
//! |---|---|---|
//! | bytes held at once (peak of live allocations) | [`PEAK_BASE`] | [`PEAK_PER_BYTE`] |
//! | bytes allocated in all | [`TOTAL_BASE`] | [`TOTAL_PER_BYTE`] |
//! | time | [`TIME_BASE`] | [`TIME_PER_BYTE`] |

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// Bytes any input may hold at once, whatever its length.
pub const PEAK_BASE: usize = 4 << 20;
/// Further bytes held at once per input byte.
pub const PEAK_PER_BYTE: usize = 256;
/// Bytes any input may allocate in all, whatever its length.
pub const TOTAL_BASE: usize = 16 << 20;
/// Further bytes allocated in all per input byte.
pub const TOTAL_PER_BYTE: usize = 4096;
/// CPU time any input may take, whatever its length.
pub const TIME_BASE: Duration = Duration::from_secs(1);
/// Further CPU time per input byte (a 64 KiB input: about 4.3 s in all).
pub const TIME_PER_BYTE: Duration = Duration::from_micros(50);

thread_local! {
    /// Whether this thread's allocations are counted (const-initialised: reading it never
    /// allocates, so the allocator may).
    static ARMED: Cell<bool> = const { Cell::new(false) };
}
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicUsize = AtomicUsize::new(0);

fn armed() -> bool {
    ARMED.try_with(Cell::get).unwrap_or(false)
}

fn counted_alloc(size: usize) {
    if armed() {
        TOTAL.fetch_add(size, Relaxed);
        let live = LIVE.fetch_add(size as isize, Relaxed) + size as isize;
        PEAK.fetch_max(live.max(0) as usize, Relaxed);
    }
}

fn counted_free(size: usize) {
    if armed() {
        LIVE.fetch_sub(size as isize, Relaxed);
    }
}

/// The system allocator, counting while an input is decided.
struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are atomics
// that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            counted_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as GlobalAlloc::alloc_zeroed requires.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            counted_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        counted_free(layout.size());
        // SAFETY: `ptr` was allocated by System with `layout` (every allocation goes through it).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by System with `layout`; the caller guarantees new_size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            counted_free(layout.size());
            counted_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// CPU time the calling thread has used (zero if the clock cannot be read, which Linux does
/// not do for this clock).
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always supported on
    // Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// What deciding one input cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Largest number of bytes held at once (allocated during the call and not yet freed).
    pub peak_bytes: usize,
    /// Bytes allocated in all.
    pub total_bytes: usize,
    /// CPU time the calling thread spent.
    pub time: Duration,
}

/// Runs `decide` and measures what it cost (allocations and frees by the calling thread while it
/// runs; the targets are single-threaded).
pub fn measure<R>(decide: impl FnOnce() -> R) -> (R, Cost) {
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    TOTAL.store(0, Relaxed);
    ARMED.with(|a| a.set(true));
    let start = thread_cpu_time();
    let r = decide();
    let time = thread_cpu_time().saturating_sub(start);
    ARMED.with(|a| a.set(false));
    let cost = Cost {
        peak_bytes: PEAK.load(Relaxed),
        total_bytes: TOTAL.load(Relaxed),
        time,
    };
    (r, cost)
}

/// The bounds for an input of `len` bytes: (peak bytes, total bytes, time).
pub fn bounds(len: usize) -> (usize, usize, Duration) {
    let scaled = u32::try_from(len).unwrap_or(u32::MAX);
    (
        PEAK_BASE.saturating_add(PEAK_PER_BYTE.saturating_mul(len)),
        TOTAL_BASE.saturating_add(TOTAL_PER_BYTE.saturating_mul(len)),
        TIME_BASE.saturating_add(TIME_PER_BYTE.saturating_mul(scaled)),
    )
}

/// Decides `input` with `decide` and fails (panics: a libFuzzer finding) when it cost more than
/// [`bounds`] allow, saying which bound and by how much.
pub fn decided<R>(input: &[u8], decide: impl FnOnce() -> R) -> R {
    let (r, cost) = measure(decide);
    let (peak, total, time) = bounds(input.len());
    assert!(
        cost.peak_bytes <= peak,
        "a {}-byte input held {} bytes at once (bound {peak})",
        input.len(),
        cost.peak_bytes
    );
    assert!(
        cost.total_bytes <= total,
        "a {}-byte input allocated {} bytes in all (bound {total})",
        input.len(),
        cost.total_bytes
    );
    assert!(
        cost.time <= time,
        "a {}-byte input took {:?} of CPU time (bound {time:?})",
        input.len(),
        cost.time
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The counters are global (each counts only the arming thread): one test at a time.
    static ONE: Mutex<()> = Mutex::new(());

    fn one() -> std::sync::MutexGuard<'static, ()> {
        ONE.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn work_within_the_bounds_passes_and_is_measured() {
        let _one = one();
        let input = [0u8; 1000];
        let v = decided(&input, || vec![1u8; 100_000]);
        assert_eq!(v.len(), 100_000);
        let (_, cost) = measure(|| vec![1u8; 100_000]);
        assert!(
            cost.peak_bytes >= 100_000 && cost.total_bytes >= 100_000,
            "{cost:?}"
        );
    }

    #[test]
    #[should_panic(expected = "held")]
    fn a_small_input_holding_megabytes_is_a_finding() {
        let _one = one();
        decided(b"tiny", || vec![1u8; PEAK_BASE + (64 << 10)]);
    }

    #[test]
    #[should_panic(expected = "allocated")]
    fn a_small_input_allocating_megabytes_in_all_is_a_finding() {
        let _one = one();
        decided(b"tiny", || {
            // Never more than 1 MiB at once, 32 MiB in all.
            for _ in 0..32 {
                std::hint::black_box(vec![1u8; 1 << 20]);
            }
        });
    }

    #[test]
    #[should_panic(expected = "CPU time")]
    fn a_small_input_taking_seconds_is_a_finding() {
        let _one = one();
        decided(b"tiny", || {
            let start = thread_cpu_time();
            let mut x = 0u64;
            while thread_cpu_time() - start < TIME_BASE + Duration::from_millis(200) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
    }

    #[test]
    fn a_longer_input_gets_more() {
        let _one = one();
        let (p0, t0, d0) = bounds(0);
        let (p1, t1, d1) = bounds(65_536);
        assert_eq!(p1 - p0, PEAK_PER_BYTE * 65_536);
        assert_eq!(t1 - t0, TOTAL_PER_BYTE * 65_536);
        assert_eq!(d1 - d0, TIME_PER_BYTE * 65_536);
    }
}
