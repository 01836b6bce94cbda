//! Column families and key layout of the node's one RocksDB.
//!
//! | column family | key                          | value                              |
//! |---------------|------------------------------|------------------------------------|
//! | `raft_meta`   | `vote`, `committed`, `last_purged`, `format`, `node_id` | versioned bincode |
//! | `log`         | log index, u64 big-endian     | versioned bincode of the entry    |
//! | `sm_meta`     | `last_applied`, `membership`, `generation`, `revision`, `clock`, `identity`, `recovery` | versioned bincode; `cluster`: JSON |
//! | `sm_meta`     | `watch_floor`                | versioned bincode: the oldest revision `watch_log` may hold |
//! | `sm_data`     | generation (u64 BE) ++ user key | revisions ++ value (`value_record.rs`) |
//! | `sm_aux`      | generation (u64 BE) ++ `L` ++ lease id (u64 BE) | a lease (versioned bincode) |
//! | `sm_aux`      | generation (u64 BE) ++ `S` ++ session id (u64 BE) | a client session and its unacknowledged results |
//! | `sm_aux`      | generation (u64 BE) ++ `I` ++ idempotency key | the answer to a request sent with that key |
//! | `sm_aux`      | generation (u64 BE) ++ `E` ++ expiry (u64 BE) ++ idempotency key | empty: the keys by expiry |
//! | `watch_log`   | revision (u64 BE)            | clock (u64 LE) ++ versioned bincode of the revision's key changes |
//!
//! `watch_log` is the watch history: what each revision changed, written in the batch of the apply
//! that made the change, trimmed by count and age, never in snapshots (after a snapshot is
//! installed the history starts at the snapshot's revision).
//!
//! Everything in `sm_meta` but `generation` is written in the same batch as the apply that
//! changed it, so it always describes the same prefix of the log as the data. `format` is written
//! when a data directory is created or upgraded (see [`crate::data_format`]); `node_id` on a
//! node's first start.
//!
//! Big-endian integers sort numerically, so the log and each generation iterate in order.
//! State-machine data is prefixed by a generation so that a snapshot can be installed beside the
//! live data and switched to with one atomic write (see [`crate::KvStateMachine`]).

/// Raft metadata: vote, committed log id, last purged log id.
pub const CF_RAFT_META: &str = "raft_meta";
/// Raft log entries by index.
pub const CF_LOG: &str = "log";
/// State-machine metadata: last applied log id, membership, data generation.
pub const CF_SM_META: &str = "sm_meta";
/// State-machine data: generation-prefixed user keys.
pub const CF_SM_DATA: &str = "sm_data";

/// State-machine state besides the data (leases, client sessions): generation-prefixed.
pub const CF_SM_AUX: &str = "sm_aux";
/// The watch history: key changes by revision.
pub const CF_WATCH_LOG: &str = "watch_log";

/// All column families, in creation order.
pub const ALL_CFS: [&str; 6] = [CF_RAFT_META, CF_LOG, CF_SM_META, CF_SM_DATA, CF_SM_AUX, CF_WATCH_LOG];

/// `raft_meta` key of the vote.
pub const KEY_VOTE: &[u8] = b"vote";
/// `raft_meta` key of the committed log id.
pub const KEY_COMMITTED: &[u8] = b"committed";
/// `raft_meta` key of the last purged log id.
pub const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// `raft_meta` key of the data directory's format version (absent: format 1).
pub const KEY_FORMAT: &[u8] = b"format";
/// `raft_meta` key of the id of the node that owns the data directory.
pub const KEY_NODE_ID: &[u8] = b"node_id";

/// `sm_meta` key of the last applied log id.
pub const KEY_LAST_APPLIED: &[u8] = b"last_applied";
/// `sm_meta` key of the last applied membership.
pub const KEY_MEMBERSHIP: &[u8] = b"membership";
/// `sm_meta` key of the live data generation.
pub const KEY_GENERATION: &[u8] = b"generation";
/// `sm_meta` key of the revision: data-changing commands applied.
pub const KEY_REVISION: &[u8] = b"revision";
/// `sm_meta` key of the state-machine clock: the newest proposal time applied, in ms.
pub const KEY_CLOCK: &[u8] = b"clock";
/// `sm_meta` key of the cluster identity (absent until the cluster is founded).
pub const KEY_IDENTITY: &[u8] = b"identity";
/// `sm_meta` key of the last forced recovery's record.
pub const KEY_RECOVERY: &[u8] = b"recovery";
/// `sm_meta` key of the oldest revision the watch history may hold.
pub const KEY_WATCH_FLOOR: &[u8] = b"watch_floor";
/// `sm_meta` key of the cluster's operating state ([`raftkv_types::ClusterState`], JSON).
pub const KEY_CLUSTER: &[u8] = b"cluster";

/// The `log` key of the entry at `index`.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The log index encoded in a `log` key.
pub fn log_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The `sm_data` key of user key `key` in generation `generation`.
pub fn data_key(generation: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The `sm_aux` key (without the generation) of lease `id`: `L` ++ id (u64 BE).
pub fn lease_aux_key(id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(b'L');
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// The `sm_aux` key (without the generation) of client session `id`: `S` ++ id (u64 BE).
pub fn session_aux_key(id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(b'S');
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// The `sm_aux` key (without the generation) of idempotency key `key`: `I` ++ key.
pub fn idempotency_aux_key(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(b'I');
    out.extend_from_slice(key.as_bytes());
    out
}

/// The `sm_aux` key (without the generation) that indexes idempotency key `key` by when it
/// expires, so that a sweep reads only what has expired: `E` ++ expiry (ms, u64 BE) ++ key.
pub fn expiry_aux_key(expires_at_ms: u64, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    out.push(b'E');
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

/// The stored `sm_aux` key of `key` in `generation`.
pub fn aux_key(generation: u64, key: &[u8]) -> Vec<u8> {
    data_key(generation, key)
}

/// The `watch_log` key of `revision`.
pub fn history_key(revision: u64) -> [u8; 8] {
    revision.to_be_bytes()
}

/// The first `sm_data` key of `generation`: all of its keys are in `[start, start(generation + 1))`.
pub fn generation_start(generation: u64) -> [u8; 8] {
    generation.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_numerically() {
        assert!(log_key(9) < log_key(10));
        assert!(log_key(255) < log_key(256));
        assert_eq!(log_index(&log_key(12345)), Some(12345));
        assert_eq!(log_index(b"short"), None);
    }

    #[test]
    fn data_keys_stay_inside_their_generation() {
        let k = data_key(3, b"\xff\xff\xff");
        assert!(k.as_slice() >= generation_start(3).as_slice());
        assert!(k.as_slice() < generation_start(4).as_slice());
    }
}
