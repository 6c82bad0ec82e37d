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

/// The allocator the async server binaries install (`#[global_allocator]`). With glibc's,
/// the short-lived buffers of a burst of joins (member lists, notices, batches) leave pages
/// that the connections' long-lived state keeps half used; mimalloc's size classes keep the
/// two apart (docs/BENCHMARKS.md). `chat-server-std` keeps glibc's:
/// mimalloc gives every thread a heap of its own, which a thread per connection multiplies.
///
/// mimalloc 2 (the crate's `v2` feature), not 3: version 3 returns freed pages to the system
/// only long after the fact, and only when its heap is next used, so an idle room keeps its
/// joins' garbage.
#[cfg(feature = "mimalloc")]
pub use mimalloc::MiMalloc;

/// Asks mimalloc to return to the system the memory it holds free. mimalloc returns freed
/// pages only when its heap is next used, so a room that falls idle after a burst of joins
/// would keep the burst's garbage for as long as it stays idle. The collection is forced,
/// because a gentle one leaves much of it. The async drivers call this when they fall quiet
/// (see [`Driver::tidy_when_quiet`](crate::Driver::tidy_when_quiet)), so its cost (a walk
/// over the heap) is never paid under load.
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)] // The project's one unsafe block: a call into the allocator.
pub fn return_freed_memory() {
    let started = std::time::Instant::now();
    // SAFETY: `mi_collect` has no preconditions; any thread may call it at any time,
    // whichever allocator the process uses.
    unsafe { libmimalloc_sys::mi_collect(true) }
    tracing::debug!(took = ?started.elapsed(), "returned freed memory to the system");
}
