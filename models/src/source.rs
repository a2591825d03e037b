//! The workload's message source, shared by the designs: an upstream outside the processes
//! under test that hands out each message id once (1..=messages), with its key. It survives
//! any crash of those processes, as an upstream would.

use sim::history::MsgId;
use sim::scenario::Workload;
use std::cell::Cell;

#[derive(Debug)]
pub struct Source {
    next: Cell<u64>,
    total: u64,
    keys: u32,
}

impl Source {
    pub fn new(workload: &Workload) -> Source {
        Source {
            next: Cell::new(1),
            total: workload.messages,
            keys: workload.keys,
        }
    }

    /// The next message and its key (`k{id % keys}` when the workload has keys).
    pub fn take(&self) -> Option<(MsgId, Option<String>)> {
        let id = self.next.get();
        if id > self.total {
            return None;
        }
        self.next.set(id + 1);
        let key = (self.keys > 0).then(|| format!("k{}", id % u64::from(self.keys)));
        Some((MsgId(id), key))
    }

    /// Messages not yet handed out.
    pub fn unpublished(&self) -> u64 {
        (self.total + 1).saturating_sub(self.next.get())
    }
}

/// A message's body on the wire: its id in decimal, which consumers read back.
pub fn encode_value(id: MsgId) -> Vec<u8> {
    id.0.to_string().into_bytes()
}

/// The id a body carries; `None` for a body no producer of ours wrote.
pub fn decode_value(value: &[u8]) -> Option<MsgId> {
    std::str::from_utf8(value).ok()?.parse().ok().map(MsgId)
}
