//! Serving a watch: the events of one watcher, read from the watch history in revision order.
//!
//! A watch is a cursor over the history (`watch_log`), not a queue: it reads a page of revisions
//! when its consumer asks for the next event, and waits for the applied revision to move once it
//! has caught up. So a slow consumer costs one page of memory however far behind it falls; if it
//! falls behind what the history keeps, it gets `compacted` and the watch ends. Events, progress
//! and the final event all come from this one cursor, so a progress event is never ahead of an
//! event still to be sent.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::Stream;
use raftkv_network::ApiError;
use raftkv_storage::HistoryRead;
use raftkv_types::api::Consistency;
use raftkv_types::{RevisionChanges, WatchEvent, WatchOptions};
use tokio::time::Instant;

use crate::kv_handle::KvHandle;

/// Revisions read from the history at a time.
const PAGE_REVISIONS: usize = 256;
/// Bytes of history read at a time (past the first revision).
const PAGE_BYTES: usize = 1 << 20;
/// How often an idle watch checks its node's contact with the leader and whether it is stopping.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The state of one watch.
struct WatchCursor {
    handle: KvHandle,
    options: WatchOptions,
    /// The next revision to read from the history.
    next: u64,
    /// Events read but not yet taken.
    pending: VecDeque<WatchEvent>,
    revisions: tokio::sync::watch::Receiver<u64>,
    /// When the last event or progress went out.
    last_sent: Instant,
    done: bool,
}

impl KvHandle {
    /// Opens a watch. Without a start revision, the start is a linearizable point (a read
    /// index): every write acknowledged before the call is before it. A start below what the
    /// history keeps is refused with `410 compacted` before any event.
    pub(crate) async fn open_watch(
        &self,
        options: WatchOptions,
    ) -> Result<impl Stream<Item = WatchEvent> + Send + 'static, ApiError> {
        let revisions = self.state_machine.subscribe_revision();
        let start = match options.start_revision {
            Some(start) => start.max(1),
            None => {
                self.ready_to_read(Consistency::Linearizable).await?;
                *revisions.borrow() + 1
            }
        };
        match self.state_machine.history(start, 1, 0).map_err(storage_error)? {
            HistoryRead::Compacted { floor } => return Err(ApiError::Compacted { asked: start, floor }),
            HistoryRead::Page(_) => {}
        }
        let cursor = WatchCursor {
            handle: self.clone(),
            options,
            next: start,
            pending: VecDeque::from([WatchEvent::Created { revision: start - 1 }]),
            revisions,
            last_sent: Instant::now(),
            done: false,
        };
        Ok(futures::stream::unfold(cursor, |mut cursor| async move {
            let event = cursor.next_event().await?;
            Some((event, cursor))
        }))
    }
}

impl WatchCursor {
    async fn next_event(&mut self) -> Option<WatchEvent> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                self.done = event.is_final();
                self.last_sent = Instant::now();
                return Some(event);
            }
            // Nothing pending: every matching event before `next` has been sent.
            if let Some(every) = self.options.progress_every
                && self.last_sent.elapsed() >= every
            {
                self.last_sent = Instant::now();
                return Some(WatchEvent::Progress { revision: self.next - 1 });
            }
            if let Some(last) = self.ending() {
                self.pending.push_back(last);
                continue;
            }
            let applied = *self.revisions.borrow_and_update();
            if self.next <= applied {
                self.read_page(applied);
                continue;
            }
            let progress_due = self.options.progress_every.map(|every| self.last_sent + every);
            let wake = progress_due.map_or(Instant::now() + CHECK_EVERY, |due| due.min(Instant::now() + CHECK_EVERY));
            tokio::select! {
                changed = self.revisions.changed() => {
                    if changed.is_err() {
                        self.pending.push_back(WatchEvent::Ended { reason: "the node stopped".into() });
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The event that ends the watch now, if it must end: the node is stopping, or (with
    /// `require_leader`) it has lost contact with the leader.
    fn ending(&self) -> Option<WatchEvent> {
        if self.handle.draining.load(Ordering::Relaxed) {
            return Some(WatchEvent::Ended { reason: "the node is shutting down; resume on another node".into() });
        }
        if self.options.require_leader {
            let lost = self.handle.staleness().is_none_or(|s| s > 2 * self.handle.election_timeout);
            if lost {
                return Some(WatchEvent::NoLeader { revision: self.next - 1 });
            }
        }
        None
    }

    /// Reads the history from `next`; `applied` is a revision every change up to which is in it.
    fn read_page(&mut self, applied: u64) {
        match self.handle.state_machine.history(self.next, PAGE_REVISIONS, PAGE_BYTES) {
            Ok(HistoryRead::Compacted { floor }) => {
                self.pending.push_back(WatchEvent::Compacted { compact_revision: floor });
            }
            Ok(HistoryRead::Page(page)) if page.is_empty() => self.next = applied + 1,
            Ok(HistoryRead::Page(page)) => {
                for revision in page {
                    self.next = revision.revision + 1;
                    self.add_events(revision);
                }
            }
            Err(e) => self.pending.push_back(WatchEvent::Ended { reason: format!("storage: {e}") }),
        }
    }

    fn add_events(&mut self, revision: RevisionChanges) {
        for change in revision.changes {
            if !self.options.selector.matches(&change.key) {
                continue;
            }
            let prev = if self.options.prev_kv { change.previous } else { None };
            let event = match change.current {
                Some(value) if !self.options.no_put => {
                    WatchEvent::Put { revision: revision.revision, key: change.key, value, prev }
                }
                None if !self.options.no_delete => {
                    WatchEvent::Delete { revision: revision.revision, key: change.key, prev }
                }
                _ => continue,
            };
            self.pending.push_back(event);
        }
    }
}

fn storage_error(e: raftkv_storage::StorageError) -> ApiError {
    ApiError::Internal(format!("storage: {e}"))
}
