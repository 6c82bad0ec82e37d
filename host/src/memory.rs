//! The allocator: small pages for every server, and for the async servers mimalloc and the
//! tidy that returns its freed memory when the room falls quiet.

/// Turns transparent huge pages off for this process. mimalloc asks for them on its whole
/// arena, and each 2 MiB page is then zeroed in one go the first time the heap reaches it,
/// in the middle of a round, and grows the resident size of an idle room in 2 MiB steps.
pub(crate) fn use_small_pages() {
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(%error, "cannot turn transparent huge pages off");
    }
}

#[cfg(feature = "mimalloc")]
/// The allocator the async server binaries install (`#[global_allocator]`). With glibc's,
/// the short-lived buffers of a burst of joins (member lists, notices, batches) leave pages
/// that the connections' long-lived state keeps half used: 6.8 KB of RSS per idle member at
/// 10,000 members, against 4.7 KB with mimalloc, whose size classes keep them apart (see
/// docs/BENCHMARKS.md). `chat-server-std` keeps glibc's: mimalloc gives every thread a heap
/// of its own, and with a thread per connection 1,000 stalled clients took 270 MB instead of
/// 58 MB.
///
/// mimalloc 2 (the crate's `v2` feature), not 3: version 3 returns freed pages to the system
/// a second after the fact and only when its heap is next used, so an idle room kept its
/// joins' garbage (smol, 10,000 idle members: 4.8-5.6 KB of RSS each with v3, 3.0-3.1 KB
/// with v2, whose delay is 10 ms).
pub use mimalloc::MiMalloc;

#[cfg(feature = "mimalloc")]
/// Asks mimalloc to return to the system the memory it holds free. mimalloc 2 returns freed
/// pages 10 ms after the fact (free segments 100 ms), but only when its heap is next used: a
/// room that falls idle after a burst of joins keeps the burst's garbage for as long as it
/// stays idle. With 10,000 idle members that was 3.9 to 8.4 KB of RSS per member from one
/// run to the next, depending on what the server happened to do last; after this call it is
/// 2.3 KB, the live state (docs/BENCHMARKS.md, "Memory and joins"). The collection is
/// forced: a gentle one left 2.9 to 5.2 KB. The async drivers call this when they fall quiet
/// (see [`Driver::tidy_when_quiet`]), so its cost (a walk over the heap) is never paid under
/// load.
#[allow(unsafe_code)] // The project's one unsafe block: a call into the allocator.
pub fn return_freed_memory() {
    let started = std::time::Instant::now();
    // SAFETY: `mi_collect` has no preconditions; any thread may call it at any time,
    // whichever allocator the process uses.
    unsafe { libmimalloc_sys::mi_collect(true) }
    tracing::debug!(took = ?started.elapsed(), "returned freed memory to the system");
}
