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

/// The TLS files every client of this process uses, when the systems under test are served
/// over TLS (one setting per process, made once at the start: [`use_tls`]).
static TLS: std::sync::OnceLock<BenchTls> = std::sync::OnceLock::new();

/// TLS for the benchmark's clients of both systems: the CA the servers' certificates come from
/// and a client certificate for servers that require one.
#[derive(Debug, Clone)]
pub struct BenchTls {
    /// The CA (PEM).
    pub ca: std::path::PathBuf,
    /// A client certificate (PEM), with `key`.
    pub cert: std::path::PathBuf,
    /// Its key (PEM).
    pub key: std::path::PathBuf,
}

/// Makes every later client of this process (both systems) speak TLS with `tls`.
pub fn use_tls(tls: BenchTls) {
    let _ = TLS.set(tls);
}

/// `https` once [`use_tls`] was called, else `http`.
fn scheme() -> &'static str {
    if TLS.get().is_some() { "https" } else { "http" }
}

/// `host:port` of an endpoint given with or without a scheme.
fn host_of(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://").trim_start_matches("https://")
}

/// A raftkv client of `endpoints`, over TLS when the process uses it.
fn raftkv_client(endpoints: &[String], timeout: Duration) -> anyhow::Result<Client> {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("{}://{}", scheme(), host_of(e))).collect();
    Ok(match TLS.get() {
        Some(tls) => {
            let files = raftkv_client::ClientTlsFiles {
                ca: Some(tls.ca.clone()),
                cert: Some(tls.cert.clone()),
                key: Some(tls.key.clone()),
            };
            Client::with_tls(&endpoints, timeout, &files)?
        }
        None => Client::with_timeout(&endpoints, timeout)?,
    })
}

/// etcd connection options, over TLS when the process uses it, and the endpoints to give it.
fn etcd_options(
    hosts: &[String],
    timeout: Option<Duration>,
) -> anyhow::Result<(Vec<String>, Option<etcd_client::ConnectOptions>)> {
    let mut options = timeout.map(|t| etcd_client::ConnectOptions::new().with_timeout(t));
    let hosts: Vec<String> = match TLS.get() {
        Some(tls) => {
            let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("read {}: {e}", p.display()));
            let tls_options = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)?))
                .identity(etcd_client::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
            options = Some(options.unwrap_or_default().with_tls(tls_options));
            hosts.iter().map(|h| format!("https://{}", host_of(h))).collect()
        }
        None => hosts.iter().map(|h| host_of(h).to_string()).collect(),
    };
    Ok((hosts, options))
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
        System::Raftkv => match raftkv_client(&[endpoint.to_string()], Duration::from_millis(500)) {
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
    let (hosts, options) = etcd_options(&[url.to_string()], Some(Duration::from_millis(500)))?;
    let mut client = etcd_client::Client::connect(hosts, options).await?;
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
                let client = raftkv_client(&rotated, options.timeout.unwrap_or(Duration::from_secs(15)))?;
                let client = client.with_read_preference(options.read_preference);
                Target::Raftkv { client, consistency }
            }
            System::Etcd => {
                let members = if options.fail_over { rotated.len() } else { 1 };
                let hosts: Vec<String> = rotated.iter().take(members).cloned().collect();
                let (hosts, etcd_options) = etcd_options(&hosts, options.timeout)?;
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
