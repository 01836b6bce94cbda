//! The systems under test, behind one interface: raftkv over its HTTP API, etcd over gRPC.

use raftkv_client::{Client, Consistency};

/// A connection to the system under test, owned by one benchmark client.
pub enum Target {
    /// raftkv through its HTTP API (persistent keep-alive connections).
    Raftkv {
        /// The client.
        client: Client,
        /// Consistency of reads.
        consistency: Consistency,
    },
    /// etcd through its own gRPC API, so that it is measured at its best.
    Etcd {
        /// The client (boxed: it is much larger than raftkv's).
        client: Box<etcd_client::Client>,
        /// `true` for linearizable reads, `false` for serializable (local) ones.
        linearizable: bool,
    },
}

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// raftkv.
    Raftkv,
    /// etcd.
    Etcd,
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            System::Raftkv => "raftkv",
            System::Etcd => "etcd",
        })
    }
}

impl Target {
    /// Connects client number `n` to `endpoints`, starting at a different endpoint per client so
    /// that the load spreads over the nodes (followers forward to the leader, on both systems).
    pub async fn connect(
        system: System,
        endpoints: &[String],
        n: usize,
        consistency: Consistency,
    ) -> anyhow::Result<Target> {
        let mut rotated = endpoints.to_vec();
        rotated.rotate_left(n % endpoints.len().max(1));
        Ok(match system {
            System::Raftkv => Target::Raftkv { client: Client::new(&rotated)?, consistency },
            System::Etcd => {
                let hosts: Vec<String> =
                    rotated.iter().map(|e| e.trim_start_matches("http://").to_string()).take(1).collect();
                let client = Box::new(etcd_client::Client::connect(hosts, None).await?);
                Target::Etcd { client, linearizable: consistency != Consistency::Stale }
            }
        })
    }

    /// Writes `value` under `key`.
    pub async fn put(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        match self {
            Target::Raftkv { client, .. } => {
                client.put(key, value.to_vec()).await?;
            }
            Target::Etcd { client, .. } => {
                client.put(key, value, None).await?;
            }
        }
        Ok(())
    }

    /// Reads `key`.
    pub async fn get(&mut self, key: &str) -> anyhow::Result<()> {
        match self {
            Target::Raftkv { client, consistency } => {
                client.get(key, *consistency).await?;
            }
            Target::Etcd { client, linearizable } => {
                let opts = (!*linearizable).then(|| etcd_client::GetOptions::new().with_serializable());
                client.get(key, opts).await?;
            }
        }
        Ok(())
    }

    /// Compare-and-swap from `expected` to `value` (an etcd transaction on the value).
    pub async fn cas(&mut self, key: &str, expected: &[u8], value: &[u8]) -> anyhow::Result<()> {
        match self {
            Target::Raftkv { client, .. } => {
                let expected = String::from_utf8_lossy(expected);
                client.cas(key, Some(&expected), &String::from_utf8_lossy(value)).await?;
            }
            Target::Etcd { client, .. } => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                let txn = Txn::new()
                    .when([Compare::value(key, CompareOp::Equal, expected)])
                    .and_then([TxnOp::put(key, value, None)]);
                client.txn(txn).await?;
            }
        }
        Ok(())
    }
}
