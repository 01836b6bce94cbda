//! The events of `GET /v1/watch`, one JSON object per NDJSON line or per SSE `data` field.

use serde::{Deserialize, Serialize};

use crate::api::key_value::KeyValue;

/// One event of a watch stream.
///
/// | `type` | meaning | fields |
/// |---|---|---|
/// | `created` | the watch started; every matching change after `revision` follows | `revision` |
/// | `put` | a key was written | `revision`, `kv`, `prev_kv` when asked for and the key existed |
/// | `delete` | a key was removed | `revision`, `key`, `prev_kv` when asked for |
/// | `progress` | every matching change up to `revision` has been sent | `revision` |
/// | `compacted` | the history the watch needs is gone; the stream ends | `compact_revision` |
/// | `no_leader` | the serving node lost contact with the leader; the stream ends | `revision` |
/// | `error` | the stream ends for another reason | `error` |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEventBody {
    /// The kind of event.
    #[serde(rename = "type")]
    pub kind: WatchEventKind,
    /// The revision of the change, or that the event speaks for.
    #[serde(default)]
    pub revision: u64,
    /// The changed key (put and delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key's new value and revisions (put).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KeyValue>,
    /// The key's value before the change (with `prev_kv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_kv: Option<KeyValue>,
    /// For `compacted`: the oldest revision still available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_revision: Option<u64>,
    /// For `error`: why the stream ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `type` of a [`WatchEventBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchEventKind {
    /// The watch started.
    Created,
    /// A key was written.
    Put,
    /// A key was removed.
    Delete,
    /// Everything up to the revision has been sent.
    Progress,
    /// The history needed is gone.
    Compacted,
    /// The node lost its leader.
    NoLeader,
    /// Another reason to end.
    Error,
}

impl WatchEventKind {
    /// The name, as the `type` field and the SSE `event` field carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventKind::Created => "created",
            WatchEventKind::Put => "put",
            WatchEventKind::Delete => "delete",
            WatchEventKind::Progress => "progress",
            WatchEventKind::Compacted => "compacted",
            WatchEventKind::NoLeader => "no_leader",
            WatchEventKind::Error => "error",
        }
    }

    /// Whether the stream ends after this event.
    pub fn is_final(self) -> bool {
        matches!(self, WatchEventKind::Compacted | WatchEventKind::NoLeader | WatchEventKind::Error)
    }
}

impl WatchEventBody {
    /// An event of `kind` at `revision` with no other field.
    pub fn at(kind: WatchEventKind, revision: u64) -> WatchEventBody {
        WatchEventBody { kind, revision, key: None, kv: None, prev_kv: None, compact_revision: None, error: None }
    }
}

impl WatchEventBody {
    /// The typed event this body carries.
    pub fn into_event(self) -> crate::WatchEvent {
        use crate::WatchEvent;
        let versioned = |kv: KeyValue| crate::Versioned::new(kv.bytes(), kv.meta());
        match self.kind {
            WatchEventKind::Created => WatchEvent::Created { revision: self.revision },
            WatchEventKind::Progress => WatchEvent::Progress { revision: self.revision },
            WatchEventKind::NoLeader => WatchEvent::NoLeader { revision: self.revision },
            WatchEventKind::Compacted => {
                WatchEvent::Compacted { compact_revision: self.compact_revision.unwrap_or(self.revision) }
            }
            WatchEventKind::Error => WatchEvent::Ended { reason: self.error.unwrap_or_default() },
            WatchEventKind::Put => {
                let key = self.key.or_else(|| self.kv.as_ref().map(|kv| kv.key.clone())).unwrap_or_default();
                WatchEvent::Put {
                    revision: self.revision,
                    key,
                    value: self.kv.map(versioned).unwrap_or_default(),
                    prev: self.prev_kv.map(versioned),
                }
            }
            WatchEventKind::Delete => WatchEvent::Delete {
                revision: self.revision,
                key: self.key.unwrap_or_default(),
                prev: self.prev_kv.map(versioned),
            },
        }
    }
}
