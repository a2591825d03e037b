//! The database's request protocol: `[u32 len][JSON]` frames, a request per statement and a
//! response per request (possibly much later, for a statement that waited on a lock).

use super::engine::{Outcome, Statement};
use serde::{Deserialize, Serialize};

pub const DB_PORT: u16 = 3306;
/// Bound on one frame, so a garbled length cannot make a reader allocate without limit.
pub const FRAME_MAX: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub statement: Statement,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub outcome: Outcome,
}

pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let body = serde_json::to_vec(message).expect("wire messages serialize");
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if incomplete.
pub fn decode<T: for<'de> Deserialize<'de>>(buf: &[u8]) -> Result<Option<(T, usize)>, String> {
    let Some(len) = buf.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > FRAME_MAX {
        return Err(format!("frame of {len} bytes"));
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let message = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(Some((message, 4 + len)))
}
