//! Spilled requests and their responses in parts: a body larger than one NATS message
//! travels as several, in order, each marked `Kindling-Spill-Part: {id} {index} {count}`.
//! The first part carries the head and the start of the body; the receiver puts the parts
//! back together (NATS keeps the order of one connection's messages on one subject) and
//! refuses a request whose parts come out of order; one whose parts stop coming is dropped
//! after 30 s, and its sender gives up at its deadline.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// The header that marks a part.
pub(crate) const PART_HEADER: &str = "Kindling-Spill-Part";
/// Largest body a spilled request or its response may carry, in parts.
pub(crate) const MAX_BODY: usize = 16 << 20;
/// Most bytes of requests being put back together at once on one node.
const MAX_ASSEMBLING: usize = 64 << 20;
/// How long the parts of one request may take to arrive.
const PART_PATIENCE: Duration = Duration::from_secs(30);
/// Most requests being put back together at once, and the longest sender id.
const MAX_PARTIAL: usize = 256;
const MAX_ID: usize = 128;
/// Smallest part: a message in more parts than [`MAX_BODY`] needs at this size is refused.
pub(crate) const MIN_PART: usize = 1024;
/// Most parts of one message.
pub(crate) const MAX_PARTS: usize = (MAX_BODY + 64 * 1024).div_ceil(MIN_PART);

/// `message` cut into parts of at most `part` bytes (one part when it fits).
pub(crate) fn split(message: &Bytes, part: usize) -> Vec<Bytes> {
    let part = part.max(1);
    if message.len() <= part {
        return vec![message.clone()];
    }
    (0..message.len())
        .step_by(part)
        .map(|start| message.slice(start..(start + part).min(message.len())))
        .collect()
}

/// The value of [`PART_HEADER`] for part `index` of `count`.
pub(crate) fn mark(id: &str, index: usize, count: usize) -> String {
    format!("{id} {index} {count}")
}

/// Reads a [`PART_HEADER`] value: the sender's id, the index and the count.
pub(crate) fn parse_mark(value: &str) -> Option<(&str, usize, usize)> {
    let mut words = value.split(' ');
    let id = words.next().filter(|id| !id.is_empty())?;
    let index = words.next()?.parse().ok()?;
    let count: usize = words.next()?.parse().ok()?;
    (words.next().is_none() && id.len() <= MAX_ID && index < count && count <= MAX_PARTS)
        .then_some((id, index, count))
}

/// What adding a part gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Assembled {
    /// More parts are to come.
    Pending,
    /// The whole message.
    Whole(Bytes),
    /// Out of order, too large, or too late: refuse it.
    Broken,
}

struct Partial {
    parts: BytesMut,
    next: usize,
    count: usize,
    since: Instant,
}

/// Puts parted messages back together.
#[derive(Default)]
pub(crate) struct Assembler {
    partial: HashMap<String, Partial>,
    bytes: usize,
}

impl Assembler {
    /// Adds part `index` of `count` of the message `id`.
    pub(crate) fn add(&mut self, id: &str, index: usize, count: usize, part: Bytes) -> Assembled {
        self.sweep();
        if count == 1 && index == 0 {
            return Assembled::Whole(part);
        }
        if index == 0 {
            if self.bytes + part.len() > MAX_ASSEMBLING
                || self.partial.len() >= MAX_PARTIAL
                || self.partial.contains_key(id)
            {
                return Assembled::Broken;
            }
            self.bytes += part.len();
            self.partial.insert(
                id.to_string(),
                Partial {
                    parts: BytesMut::from(&part[..]),
                    next: 1,
                    count,
                    since: Instant::now(),
                },
            );
            return Assembled::Pending;
        }
        let Some(partial) = self.partial.get_mut(id) else {
            return Assembled::Broken;
        };
        let fits = partial.parts.len() + part.len() <= MAX_BODY + 64 * 1024
            && self.bytes + part.len() <= MAX_ASSEMBLING;
        if index != partial.next || count != partial.count || !fits {
            self.forget(id);
            return Assembled::Broken;
        }
        partial.parts.extend_from_slice(&part);
        partial.next += 1;
        self.bytes += part.len();
        if partial.next < partial.count {
            return Assembled::Pending;
        }
        let done = self.partial.remove(id).expect("present");
        self.bytes -= done.parts.len();
        Assembled::Whole(done.parts.freeze())
    }

    fn forget(&mut self, id: &str) {
        if let Some(gone) = self.partial.remove(id) {
            self.bytes -= gone.parts.len();
        }
    }

    /// Drops messages whose parts stopped coming.
    fn sweep(&mut self) {
        let stale: Vec<String> = self
            .partial
            .iter()
            .filter(|(_, partial)| partial.since.elapsed() > PART_PATIENCE)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.forget(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_comes_back_whole_from_its_parts() {
        let message = Bytes::from((0..2_500u32).map(|i| i as u8).collect::<Vec<_>>());
        let parts = split(&message, 1_000);
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            [1_000, 1_000, 500]
        );
        let mut assembler = Assembler::default();
        assert_eq!(
            assembler.add("a", 0, 3, parts[0].clone()),
            Assembled::Pending
        );
        assert_eq!(
            assembler.add("a", 1, 3, parts[1].clone()),
            Assembled::Pending
        );
        assert_eq!(
            assembler.add("a", 2, 3, parts[2].clone()),
            Assembled::Whole(message.clone())
        );
        assert_eq!(assembler.bytes, 0);
        assert_eq!(split(&message, 5_000), vec![message.clone()]);
        assert_eq!(
            assembler.add("b", 0, 1, message.clone()),
            Assembled::Whole(message)
        );
    }

    #[test]
    fn parts_out_of_order_or_unknown_are_refused() {
        let mut assembler = Assembler::default();
        assert_eq!(assembler.add("a", 1, 2, Bytes::new()), Assembled::Broken);
        assert_eq!(
            assembler.add("a", 0, 3, Bytes::from_static(b"x")),
            Assembled::Pending
        );
        assert_eq!(
            assembler.add("a", 2, 3, Bytes::from_static(b"z")),
            Assembled::Broken
        );
        assert_eq!(assembler.bytes, 0);
        assert_eq!(assembler.add("a", 1, 3, Bytes::new()), Assembled::Broken);
        assert_eq!(parse_mark("id 1 3"), Some(("id", 1, 3)));
        for bad in ["", "id", "id 3 3", "id 1", "id x 3", "id 1 3 4", " 0 1"] {
            assert_eq!(parse_mark(bad), None, "{bad:?}");
        }
    }
}
