//! Applying log entries: the deterministic evaluation of commands over the state machine.
//!
//! Every replica applies the same entries in the same order and must reach the same state, so
//! nothing here reads a clock, a random number or anything but the entries and the stored state.

use std::collections::HashMap;

use openraft::EntryPayload;
use raftkv_types::{ClusterIdentity, Command, CommandResult, Entry, LogId, Outcome};
use rocksdb::{ColumnFamily, DB, WriteBatch};

use crate::applied_state::AppliedState;
use crate::error::{Result, StorageError};
use crate::keys::{CF_SM_DATA, data_key};

/// One batch of applies: data writes gathered in a RocksDB batch, with the values written so far
/// visible to later commands of the same batch.
pub(crate) struct ApplyBatch<'a> {
    db: &'a DB,
    generation: u64,
    pub(crate) batch: WriteBatch,
    /// Values written earlier in this batch but not yet in RocksDB.
    overlay: HashMap<String, Option<Vec<u8>>>,
    /// The applied state after the entries so far.
    pub(crate) state: AppliedState,
}

impl<'a> ApplyBatch<'a> {
    pub(crate) fn new(db: &'a DB, generation: u64, state: AppliedState) -> ApplyBatch<'a> {
        ApplyBatch { db, generation, batch: WriteBatch::default(), overlay: HashMap::new(), state }
    }

    fn data_cf(&self) -> &'a ColumnFamily {
        self.db.cf_handle(CF_SM_DATA).expect("sm_data column family is created at open")
    }

    /// Applies one entry and returns what its proposer is told.
    ///
    /// Revisions: until the cluster has an identity (format 1 data, or the first moments of a new
    /// cluster) a revision is the log index of the entry, as format 1 had it; from the entry that
    /// founds the cluster on, each data-changing command raises it by one. Both rules never go
    /// backwards, and every replica switches at the same entry.
    pub(crate) fn apply(&mut self, entry: Entry) -> Result<CommandResult> {
        let index = entry.log_id.index;
        let counting = self.state.identity.is_some();
        let outcome = match entry.payload {
            EntryPayload::Blank => Outcome::None,
            EntryPayload::Membership(m) => {
                self.state.membership = raftkv_types::StoredMembership::new(Some(entry.log_id), m);
                Outcome::None
            }
            EntryPayload::Normal(proposal) => {
                self.state.clock_ms = self.state.clock_ms.max(proposal.proposed_at_ms);
                let (outcome, changed) = self.evaluate(proposal.command, &entry.log_id)?;
                if changed && counting {
                    self.state.revision += 1;
                }
                outcome
            }
        };
        if !counting {
            self.state.revision = self.state.revision.max(index);
        }
        self.state.last_applied = Some(entry.log_id);
        Ok(CommandResult { revision: self.state.revision, log_index: index, outcome })
    }

    /// Evaluates `command`, carried by the entry at `log_id`: its outcome, and whether it changed
    /// data.
    fn evaluate(&mut self, command: Command, log_id: &LogId) -> Result<(Outcome, bool)> {
        Ok(match command {
            Command::Put { key, value } => {
                self.put(key, value);
                (Outcome::Put, true)
            }
            Command::Delete { key } => {
                let deleted = self.current(&key)?.is_some();
                if deleted {
                    self.batch.delete_cf(self.data_cf(), data_key(self.generation, key.as_bytes()));
                    self.overlay.insert(key, None);
                }
                (Outcome::Delete { deleted }, deleted)
            }
            Command::Cas { key, expected, value } => {
                let current = self.current(&key)?;
                let succeeded = current == expected;
                if succeeded {
                    self.put(key, value);
                }
                (Outcome::Cas { succeeded, current }, succeeded)
            }
            Command::FoundCluster { cluster_id } => {
                if self.state.identity.is_none() && ClusterIdentity::is_valid_id(&cluster_id) {
                    self.state.identity = Some(ClusterIdentity::new(cluster_id, 1));
                }
                (Outcome::None, false)
            }
            Command::Cluster(change) => {
                std::sync::Arc::make_mut(&mut self.state.cluster).apply(change, log_id.index, self.state.clock_ms);
                (Outcome::None, false)
            }
            Command::Fenced { token, command } => {
                // The entry's own leader is the leadership that proposed it: a token of any other
                // (an earlier term, or the same node re-elected since) is stale. Entries of a
                // deposed leader that were committed later are ordered before the new leader's
                // first entry, so they are still in their leadership.
                let proposer = log_id.committed_leader_id();
                if proposer.term != token.term || proposer.node_id != token.leader {
                    (Outcome::Fenced { current_term: proposer.term }, false)
                } else if matches!(
                    *command,
                    Command::Fenced { .. } | Command::Cluster(_) | Command::FoundCluster { .. }
                ) {
                    // Only key-value writes are fenced (the API never proposes anything else).
                    (Outcome::Fenced { current_term: proposer.term }, false)
                } else {
                    self.evaluate(*command, log_id)?
                }
            }
        })
    }

    fn put(&mut self, key: String, value: Vec<u8>) {
        self.batch.put_cf(self.data_cf(), data_key(self.generation, key.as_bytes()), &value);
        self.overlay.insert(key, Some(value));
    }

    fn current(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self
                .db
                .get_cf(self.data_cf(), data_key(self.generation, key.as_bytes()))
                .map_err(StorageError::rocks("read key")),
        }
    }

    /// Starts the next batch from the state reached so far, once this one has been written.
    pub(crate) fn take(&mut self) -> WriteBatch {
        self.overlay.clear();
        std::mem::take(&mut self.batch)
    }
}
