//! `poll_conflated` allocates nothing per record once its table has grown:
//! a counting allocator (this thread's allocations only, so the journal's
//! housekeeper does not count) over a second conflating read of the same
//! shape as the first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use backwater::{Config, Journal, Seek};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// count is a thread-local `Cell` with a const initializer (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn a_steady_conflating_read_allocates_nothing_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), Config::default().segment_size(1 << 20).min_free_disk(0)).unwrap();
    let publisher = journal.publisher();
    for n in 0..50_000u32 {
        let key = format!("key-{}", n % 2_000);
        publisher.append_keyed(key.as_bytes(), &n.to_le_bytes()).unwrap();
    }
    let mut consumer = journal.anonymous_consumer();
    let mut sum = 0u64;
    let mut read = |consumer: &mut backwater::Consumer| {
        consumer.poll_conflated_counts(|r| sum += u64::from(r.payload()[0]), 25_000).unwrap()
    };
    let before = allocations();
    let first = read(&mut consumer);
    assert_eq!((first.read, first.delivered), (25_000, 2_000));
    assert!(allocations() > before, "the first read grows its table: the counter sees it");
    let before = allocations();
    let second = read(&mut consumer);
    let during = allocations() - before;
    assert_eq!((second.read, second.delivered), (25_000, 2_000));
    // Mapping a segment the first read did not reach may allocate a little;
    // nothing may scale with the 25,000 records.
    assert!(during < 50, "{during} allocations for 25,000 records");
    consumer.seek(Seek::Start).unwrap();
    let before = allocations();
    read(&mut consumer);
    assert!(allocations() - before < 50);
    std::hint::black_box(sum);
}
