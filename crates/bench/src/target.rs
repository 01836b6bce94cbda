//! The systems under test, behind one interface: raftkv over its HTTP API, etcd over gRPC.

use std::time::Duration;

use raftkv_client::{Client, Consistency, Role};

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

/// How a [`Target`] connects.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// Per-request timeout (the client library's default when `None`).
    pub timeout: Option<Duration>,
    /// Give an etcd client every member (it fails over), not only its own.
    pub fail_over: bool,
    /// Where a raftkv client sends reads.
    pub read_preference: raftkv_client::ReadPreference,
}

/// Which members the clients of a run talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Client `n` starts at member `n mod members`: the load spreads over the members, and a
    /// follower forwards what only the leader can do.
    Spread,
    /// Every client starts at the member that leads when the run begins: no forwarding hop. Both
    /// systems' best case for writes (raftkv's client also moves to the leader by itself).
    Leader,
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

/// Whether the member at `endpoint` reports that it leads (no answer within 500 ms: no).
pub async fn leads(system: System, endpoint: &str) -> bool {
    match system {
        System::Raftkv => match Client::with_timeout([endpoint], Duration::from_millis(500)) {
            Ok(client) => client.status().await.is_ok_and(|s| s.role == Role::Leader),
            Err(_) => false,
        },
        System::Etcd => etcd_status(endpoint).await.is_ok_and(|s| s.member_id == s.leader_id),
    }
}

/// `endpoints` with the member that currently leads first; the order of the others is kept.
pub async fn leader_first(system: System, endpoints: &[String]) -> anyhow::Result<Vec<String>> {
    for (i, endpoint) in endpoints.iter().enumerate() {
        if leads(system, endpoint).await {
            let mut ordered = endpoints.to_vec();
            let leader = ordered.remove(i);
            ordered.insert(0, leader);
            return Ok(ordered);
        }
    }
    anyhow::bail!("{system}: no member reports itself leader")
}

/// What an etcd member reports of itself.
#[derive(Debug, Clone, Copy)]
pub struct EtcdStatus {
    /// The member's id.
    pub member_id: u64,
    /// The id of the member it believes leads.
    pub leader_id: u64,
    /// Its applied index.
    pub applied_index: u64,
    /// Its last raft index.
    pub raft_index: u64,
}

/// The status of the etcd member at `url`.
pub async fn etcd_status(url: &str) -> anyhow::Result<EtcdStatus> {
    let host = url.trim_start_matches("http://").to_string();
    let options = etcd_client::ConnectOptions::new().with_timeout(Duration::from_millis(500));
    let mut client = etcd_client::Client::connect([host], Some(options)).await?;
    let s = client.status().await?;
    Ok(EtcdStatus {
        member_id: s.header().map_or(0, |h| h.member_id()),
        leader_id: s.leader(),
        applied_index: s.raft_applied_index(),
        raft_index: s.raft_index(),
    })
}

impl Target {
    /// Connects client number `n` to `endpoints`, starting at a different endpoint per client so
    /// that the load spreads over the nodes (followers forward to the leader, on both systems).
    /// An etcd client stays on that one member.
    pub async fn connect(
        system: System,
        endpoints: &[String],
        n: usize,
        consistency: Consistency,
    ) -> anyhow::Result<Target> {
        Self::connect_with(system, endpoints, n, consistency, ConnectOptions::default()).await
    }

    /// [`connect`](Self::connect) with a request timeout and, for etcd, every member to fail
    /// over to.
    pub async fn connect_with(
        system: System,
        endpoints: &[String],
        n: usize,
        consistency: Consistency,
        options: ConnectOptions,
    ) -> anyhow::Result<Target> {
        let mut rotated = endpoints.to_vec();
        rotated.rotate_left(n % endpoints.len().max(1));
        Ok(match system {
            System::Raftkv => {
                let client = match options.timeout {
                    Some(timeout) => Client::with_timeout(&rotated, timeout)?,
                    None => Client::new(&rotated)?,
                };
                let client = client.with_read_preference(options.read_preference);
                Target::Raftkv { client, consistency }
            }
            System::Etcd => {
                let members = if options.fail_over { rotated.len() } else { 1 };
                let hosts: Vec<String> =
                    rotated.iter().map(|e| e.trim_start_matches("http://").to_string()).take(members).collect();
                let etcd_options = options.timeout.map(|t| etcd_client::ConnectOptions::new().with_timeout(t));
                let client = Box::new(etcd_client::Client::connect(hosts, etcd_options).await?);
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
