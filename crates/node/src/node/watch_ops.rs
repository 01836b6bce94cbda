//! [`Node`]'s watch and transaction calls.

use futures::Stream;
use raftkv_network::KvService;
use raftkv_network::txn_routes::{txn_answer, txn_of};
use raftkv_types::api::{Consistency, Durability, TxnRequest, TxnResponse};
use raftkv_types::{Command, Versioned, WatchEvent, WatchOptions};

use crate::error::{NodeError, Result};
use crate::node::Node;

impl Node {
    /// Watches keys on this node: every matching change in revision order, none missing, none
    /// twice, from `options.start_revision` (or, without one, from a linearizable point: every
    /// write acknowledged before the call is before the start). The stream begins with
    /// [`WatchEvent::Created`] and ends after a final event ([`WatchEvent::Compacted`],
    /// [`WatchEvent::NoLeader`], [`WatchEvent::Ended`]) or when dropped. It holds one page of
    /// history at a time however slowly it is read.
    ///
    /// Fails with `compacted` when the start is older than the history this node keeps.
    pub async fn watch(&self, options: WatchOptions) -> Result<impl Stream<Item = WatchEvent> + Send + 'static> {
        self.handle.open_watch(options).await.map_err(NodeError::Api)
    }

    /// Runs a transaction: if every comparison holds, the success operations, otherwise the
    /// failure ones, all applied at one revision (on the leader; forwarded there from a
    /// follower). The answer says which branch ran and what its gets read.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse> {
        let txn = txn_of(request.clone(), self.handle.limits().max_value_bytes).map_err(NodeError::Api)?;
        self.with_leader(
            || async {
                let result = self.handle.write(Command::Txn(txn.clone()), Durability::Majority).await?;
                txn_answer(&txn, result)
            },
            |client| {
                let request = request.clone();
                async move { client.txn(&request).await }
            },
        )
        .await
    }

    /// Reads `key` with its revisions at `consistency`; `None` when absent.
    pub async fn get_versioned(&self, key: &str, consistency: Consistency) -> Result<Option<Versioned>> {
        self.with_leader(
            || self.handle.read(key.to_string(), consistency, None),
            |client| async move {
                Ok(client.get_kv(key, consistency).await?.map(|kv| Versioned::new(kv.bytes(), kv.meta())))
            },
        )
        .await
    }
}
