//! The read gate (S8.1): while the room machine paces the room, readers start no new reads.
//!
//! The driver closes the gate on [`Output::PauseReading`](chathttp_core::Output) and opens
//! it on `ResumeReading`. Each reader asks before every read ([`ReadGate::poll_open`]);
//! while the gate is closed it waits, so the kernel's receive buffer fills and TCP slows the
//! sender down. A read already started finishes and is handed in as usual: the machine sets
//! such bytes aside. A connection that is closing reads on regardless (see
//! [`Outgoing::may_read`](crate::buffers::Outgoing::may_read)), so that its linger still
//! ends when the peer closes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

/// Whether readers may read, and who waits until they may. Shared by the driver and every
/// reader.
#[derive(Debug)]
pub struct ReadGate {
    open: AtomicBool,
    /// Readers that found the gate closed.
    waiting: Mutex<Vec<Waker>>,
}

impl Default for ReadGate {
    fn default() -> Self {
        Self {
            open: AtomicBool::new(true),
            waiting: Mutex::new(Vec::new()),
        }
    }
}

impl ReadGate {
    /// Whether readers may read now. One atomic load: readers ask before every read.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Whether a reader may read now; if not, `waker` is woken once it may.
    pub fn poll_open(&self, waker: &Waker) -> bool {
        if self.is_open() {
            return true;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        // Looked at again under the lock: `open` stores first and then takes the lock, so
        // a waker pushed here is either seen by it or not needed.
        if self.is_open() {
            return true;
        }
        waiting.push(waker.clone());
        false
    }

    /// Readers stop before their next read.
    pub fn close(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// Readers read again; those waiting are woken.
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_reader_that_finds_it_closed_is_woken_when_it_opens() {
        let gate = ReadGate::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        assert!(gate.poll_open(&waker), "open at first");
        gate.close();
        assert!(!gate.poll_open(&waker));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        gate.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once");
        assert!(gate.poll_open(&waker));
        gate.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "nobody left to wake");
    }
}
