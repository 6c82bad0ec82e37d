//! Runs of broadcasts: consecutive broadcasts to the same members, joined into one buffer.
//!
//! A sender that writes fast is read many messages at a time, and the room machine answers
//! each read with one [`Output::Broadcast`](chathttp_core::Output::Broadcast) per message, all
//! to the same recipients. Queued frame by frame, every member would get one queue entry, one
//! reference count and one slice of a vectored write per message, and a write would carry at
//! most [`MAX_WRITE_SLICES`](crate::buffers::MAX_WRITE_SLICES) of them. Joined, the run's
//! frames are copied once into one buffer, and every member gets one entry for the whole run:
//! the cost per member is paid per read, not per message, and a member's write is a few large
//! slices. A run of one frame is not copied.
//!
//! Frames stay whole and in order: a run ends at the first output that is not a broadcast to
//! the same recipients, and is queued before that output is carried out. Browser members (a
//! WebSocket sends each frame as one message) get the run's frames one by one, as slices of
//! the joined buffer; TLS takes the joined buffer as it is.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chathttp_core::ConnId;

/// Broadcasts to the same recipients, not yet queued.
#[derive(Debug, Default)]
pub(crate) struct Run {
    to: Option<Arc<[ConnId]>>,
    /// The run's only frame, not copied; `None` once `joined` holds the frames.
    first: Option<Bytes>,
    joined: BytesMut,
    /// Where each frame in `joined` ends.
    ends: Vec<usize>,
}

/// A run that has ended: its recipients and its frames, to be queued for each of them.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) to: Arc<[ConnId]>,
    /// Every frame of the run, back to back.
    pub(crate) bytes: Bytes,
    /// Where each frame in `bytes` ends; empty for a run of one frame.
    ends: Vec<usize>,
}

impl Joined {
    /// The run's frames one by one, as slices of [`bytes`](Self::bytes).
    pub(crate) fn frames(&self) -> impl Iterator<Item = Bytes> + '_ {
        let single = self.ends.is_empty().then(|| self.bytes.clone());
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        let joined = starts
            .zip(&self.ends)
            .map(|(start, &end)| self.bytes.slice(start..end));
        single.into_iter().chain(joined)
    }
}

impl Run {
    /// Adds a broadcast of `frame` to `to`. Returns the run it ends, if `to` are not this
    /// run's recipients (compared by identity: the machine shares one list between
    /// broadcasts while membership does not change).
    pub(crate) fn push(&mut self, to: Arc<[ConnId]>, frame: Bytes) -> Option<Joined> {
        let same = self.to.as_ref().is_some_and(|run| Arc::ptr_eq(run, &to));
        let ended = if same { None } else { self.take() };
        if self.to.is_none() {
            self.to = Some(to);
            self.first = Some(frame);
            return ended;
        }
        if let Some(first) = self.first.take() {
            self.joined.extend_from_slice(&first);
            self.ends.push(first.len());
        }
        self.joined.extend_from_slice(&frame);
        self.ends.push(self.joined.len());
        ended
    }

    /// Ends the run, if one has begun.
    pub(crate) fn take(&mut self) -> Option<Joined> {
        let to = self.to.take()?;
        let (bytes, ends) = match self.first.take() {
            Some(first) => (first, Vec::new()),
            // Not `split`: the next run's buffer must not share this one's allocation, which
            // a member that reads slowly would keep alive.
            None => (
                std::mem::take(&mut self.joined).freeze(),
                std::mem::take(&mut self.ends),
            ),
        };
        Some(Joined { to, bytes, ends })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chathttp_core::{Server, ServerConfig, Timestamp};

    use super::*;

    /// Connection ids as a room machine gives them, `ids` picking which.
    fn members(ids: &[usize]) -> Arc<[ConnId]> {
        let now = Timestamp::new(Duration::ZERO, chrono::NaiveDateTime::default());
        let mut server = Server::new(ServerConfig::default(), now);
        let all: Vec<ConnId> = (0..4).map(|_| server.handle_open(now)).collect();
        ids.iter().map(|&i| all[i]).collect()
    }

    fn frames(joined: &Joined) -> Vec<Bytes> {
        joined.frames().collect()
    }

    #[test]
    fn broadcasts_to_the_same_members_join_into_one_buffer() {
        let (everyone, fewer) = (members(&[1, 2, 3]), members(&[1, 2]));
        let mut run = Run::default();
        assert!(
            run.push(Arc::clone(&everyone), Bytes::from("a\n"))
                .is_none()
        );
        assert!(
            run.push(Arc::clone(&everyone), Bytes::from("bc\n"))
                .is_none()
        );
        assert!(
            run.push(Arc::clone(&everyone), Bytes::from("d\n"))
                .is_none()
        );
        let joined = run
            .push(Arc::clone(&fewer), Bytes::from("e\n"))
            .expect("a new run");
        assert!(Arc::ptr_eq(&joined.to, &everyone));
        assert_eq!(&joined.bytes[..], b"a\nbc\nd\n");
        assert_eq!(frames(&joined), ["a\n", "bc\n", "d\n"]);
        let last = run.take().expect("a run");
        assert!(Arc::ptr_eq(&last.to, &fewer));
        assert_eq!(frames(&last), ["e\n"]);
        assert!(run.take().is_none(), "nothing left");
    }

    #[test]
    fn an_equal_list_that_is_not_the_same_list_starts_a_new_run() {
        let mut run = Run::default();
        assert!(run.push(members(&[1]), Bytes::from("a")).is_none());
        let joined = run
            .push(members(&[1]), Bytes::from("b"))
            .expect("a new run");
        assert_eq!(
            frames(&joined),
            ["a"],
            "kept in order, never merged wrongly"
        );
    }

    #[test]
    fn a_run_of_one_frame_is_not_copied() {
        let frame = Bytes::from(vec![b'x'; 100]);
        let mut run = Run::default();
        let _ = run.push(members(&[1]), frame.clone());
        let joined = run.take().expect("a run");
        assert_eq!(joined.bytes.as_ptr(), frame.as_ptr());
        assert_eq!(joined.frames().count(), 1);
    }

    #[test]
    fn the_buffer_is_not_shared_with_the_next_run() {
        let to = members(&[1]);
        let mut run = Run::default();
        let _ = run.push(Arc::clone(&to), Bytes::from("a"));
        let _ = run.push(Arc::clone(&to), Bytes::from("b"));
        let first = run.take().expect("a run");
        let _ = run.push(Arc::clone(&to), Bytes::from("c"));
        let _ = run.push(Arc::clone(&to), Bytes::from("d"));
        let second = run.take().expect("a run");
        assert_eq!(&first.bytes[..], b"ab", "unchanged by the next run");
        assert_eq!(&second.bytes[..], b"cd");
    }
}
