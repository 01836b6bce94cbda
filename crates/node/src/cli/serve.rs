//! `raftkv serve`: one node in the foreground until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use raftkv_network::PeerSecret;
use raftkv_node::{Node, NodeConfig, RaftTuning, parse_members};
use raftkv_tls::{ClientAuth, PeerTlsFiles, ServerTlsFiles};
use tokio::signal::unix::{SignalKind, signal};

/// Arguments of `raftkv serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long, required_unless_present = "id_from_hostname", conflicts_with = "id_from_hostname")]
    id: Option<u64>,
    /// Take the id from the host name's trailing ordinal plus one: `raftkv-0` is node 1,
    /// `raftkv-2` node 3 (a Kubernetes StatefulSet's pod names).
    #[arg(long)]
    id_from_hostname: bool,
    /// HOST:PORT to serve the client API and peer RPC on.
    #[arg(long)]
    listen: String,
    /// Directory for the node's data; created if missing.
    #[arg(long)]
    data_dir: PathBuf,
    /// Founding members as ID=HOST:PORT,...; used only on the first start with an empty data dir.
    #[arg(long, conflicts_with = "join")]
    initial_cluster: Option<String>,
    /// Join an existing cluster as a learner (read replica): comma-separated URLs of any of its
    /// members. The node asks to be added and keeps asking until it is.
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    /// Also serve /metrics, /livez, /readyz and the /ui dashboard (with the read-only status it
    /// polls) on this HOST:PORT, plain HTTP: for probes and Prometheus whatever the main port
    /// requires.
    #[arg(long)]
    ops_listen: Option<String>,
    /// HOST:PORT the other members reach this node at (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// The zone this node runs in (a site or data centre, e.g. a DR site), given to the cluster
    /// when it joins and shown in status. With --join.
    #[arg(long, requires = "join")]
    zone: Option<String>,
    /// Join as a standby: a learner the autopilot may promote to replace a dead voter. With
    /// --join.
    #[arg(long, requires = "join")]
    standby: bool,
    /// How long this node tells the leader it will be away when stopped with SIGTERM or SIGINT
    /// (a planned restart), so that the autopilot does not replace it meanwhile; 0s: say
    /// nothing.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    restart_grace: Duration,
    /// Heartbeat interval in ms.
    #[arg(long, default_value_t = RaftTuning::default().heartbeat_ms)]
    heartbeat_ms: u64,
    /// Minimum election timeout in ms.
    #[arg(long, default_value_t = RaftTuning::default().election_timeout_min_ms)]
    election_timeout_min_ms: u64,
    /// Maximum election timeout in ms.
    #[arg(long, default_value_t = RaftTuning::default().election_timeout_max_ms)]
    election_timeout_max_ms: u64,
    /// Build a snapshot (and compact the log) every this many entries.
    #[arg(long, default_value_t = RaftTuning::default().snapshot_every)]
    snapshot_every: u64,
    /// Log entries kept behind a snapshot.
    #[arg(long, default_value_t = RaftTuning::default().keep_logs_after_snapshot)]
    keep_logs: u64,
    /// Largest value accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_value_bytes: usize,
    /// How long a write may wait for commit before answering outcome_unknown, in ms.
    #[arg(long, default_value_t = 5000)]
    write_timeout_ms: u64,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Free space to keep on the data directory's filesystem ("64MiB", "1GiB"; 0 never refuses):
    /// below it the node refuses writes (507) and log appends until space is freed.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    min_free_disk: u64,
    /// Watch history kept: this many of the newest revisions (0: no limit by count).
    #[arg(long, default_value_t = 100_000)]
    watch_history_revisions: u64,
    /// Watch history kept: revisions at most this old by the cluster's clock ("1h", "30m"; 0: no
    /// limit by age).
    #[arg(long, default_value = "1h", value_parser = parse_age)]
    watch_history_age: Duration,
    /// Check client requests against this auth file (TOML: users, tokens, roles; see
    /// docs/operations.md). Reloaded when it changes. Needs --peer-secret-file.
    #[arg(long, value_name = "FILE", requires = "peer_secret_file")]
    auth_file: Option<PathBuf>,
    /// A file whose first line is the secret every member of the cluster shares (at least 16
    /// bytes; raftkv auth new-token makes one): peer RPC must present it.
    #[arg(long, value_name = "FILE")]
    peer_secret_file: Option<PathBuf>,
    /// Serve clients over TLS with this certificate chain (PEM), with --tls-key. Needs peer TLS
    /// (members share the port); without it, the peer certificate serves clients too.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA of client certificates (PEM), for --tls-client-auth optional or required.
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// Whether clients present certificates of --tls-client-ca: off, optional (verified when
    /// presented) or required.
    #[arg(long, value_name = "MODE", default_value = "off", value_parser = parse_client_auth)]
    tls_client_auth: ClientAuth,
    /// Members' mutual TLS: the CA every member's certificate comes from (PEM). With
    /// --peer-tls-cert and --peer-tls-key, all traffic between members is TLS, each verifying
    /// the other, and the port is TLS.
    #[arg(long, value_name = "FILE", requires_all = ["peer_tls_cert", "peer_tls_key"])]
    peer_tls_ca: Option<PathBuf>,
    /// This member's certificate (PEM), naming its member id as a URI spiffe://raftkv/node/ID
    /// (raftkv cluster --tls shows how to make one).
    #[arg(long, value_name = "FILE", requires = "peer_tls_ca")]
    peer_tls_cert: Option<PathBuf>,
    /// The private key of --peer-tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "peer_tls_ca")]
    peer_tls_key: Option<PathBuf>,
    /// TEST ONLY, LOSES ACKNOWLEDGED WRITES ON POWER LOSS: never fsync log appends and votes.
    /// For power-loss tests that must show their checker catches lost writes.
    #[arg(long)]
    unsafe_no_fsync: bool,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<NodeConfig> {
        let id = match self.id {
            Some(0) => anyhow::bail!("--id must be a positive integer"),
            Some(id) => id,
            None => {
                let host = nix::unistd::gethostname().context("--id-from-hostname: read the host name")?;
                id_from_hostname(&host.to_string_lossy())?
            }
        };
        let mut config = NodeConfig::new(id, self.listen.clone(), self.data_dir.clone());
        if let Some(members) = &self.initial_cluster {
            config.initial_cluster = parse_members(members).context("--initial-cluster")?;
        }
        config.join = self.join.clone();
        config.advertise = self.advertise.clone();
        config.zone = self.zone.clone();
        config.standby = self.standby;
        config.restart_grace = self.restart_grace;
        config.raft = RaftTuning {
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
            snapshot_every: self.snapshot_every,
            keep_logs_after_snapshot: self.keep_logs,
        };
        config.max_value_bytes = self.max_value_bytes;
        config.write_timeout = Duration::from_millis(self.write_timeout_ms);
        config.unsafe_no_fsync = self.unsafe_no_fsync;
        config.min_free_disk_bytes = self.min_free_disk;
        config.ops_listen = self.ops_listen.clone();
        config.watch_history = raftkv_storage::HistoryRetention {
            revisions: self.watch_history_revisions,
            max_age: self.watch_history_age,
        };
        config.auth_file = self.auth_file.clone();
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(ServerTlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
                client_auth: self.tls_client_auth,
                peer_ca: None,
            });
        } else if self.tls_client_ca.is_some() || self.tls_client_auth != ClientAuth::Off {
            anyhow::bail!("--tls-client-ca and --tls-client-auth go with --tls-cert and --tls-key");
        }
        if let (Some(ca), Some(cert), Some(key)) = (&self.peer_tls_ca, &self.peer_tls_cert, &self.peer_tls_key) {
            config.peer_tls = Some(PeerTlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() });
        }
        if let Some(file) = &self.peer_secret_file {
            config.peer_secret = Some(
                PeerSecret::from_file(file).map_err(|e| anyhow::anyhow!("--peer-secret-file {e}"))?.token().to_string(),
            );
        }
        config.validate()?;
        Ok(config)
    }
}

/// A duration such as `1h`, or `0` for none.
fn parse_client_auth(s: &str) -> Result<ClientAuth, String> {
    s.parse()
}

fn parse_age(raw: &str) -> Result<Duration, String> {
    if raw.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(raw).map_err(|e| format!("{raw:?} is not a duration such as 1h or 30m: {e}"))
}

/// The node id of host `name`: its trailing `-N` ordinal plus one (`raftkv-0` is node 1), so
/// that a StatefulSet's pods get ids 1, 2, 3... in order. Only the first label of a fully
/// qualified name counts.
pub(crate) fn id_from_hostname(name: &str) -> anyhow::Result<u64> {
    let host = name.split('.').next().unwrap_or_default();
    let ordinal = host
        .rsplit_once('-')
        .map(|(_, n)| n)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n < u64::MAX)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--id-from-hostname: host name {name:?} does not end in -N (a StatefulSet ordinal such as raftkv-0); give --id"
            )
        })?;
    Ok(ordinal + 1)
}

/// Parses a size such as `64MiB`, `1GB` or `1048576`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>().map(|b| b.as_u64()).map_err(|e| format!("{s:?} is not a size such as 64MiB: {e}"))
}

/// Runs one node until SIGTERM or SIGINT, then shuts it down cleanly.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    super::init_logging(args.log_json);
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let node = Node::start(config).await?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        reason = node.failed() => {
            tracing::error!(%reason, "raft stopped: this node cannot go on; restart it once the cause is fixed (a full disk: free space)");
            let _ = node.shutdown().await;
            anyhow::bail!("raft stopped: {reason}");
        }
    }
    node.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::id_from_hostname;

    #[test]
    fn ids_come_from_the_statefulset_ordinal() {
        assert_eq!(id_from_hostname("raftkv-0").unwrap(), 1);
        assert_eq!(id_from_hostname("raftkv-2").unwrap(), 3);
        assert_eq!(id_from_hostname("my-kv-store-12").unwrap(), 13);
        assert_eq!(id_from_hostname("raftkv-1.raftkv-peer.default.svc.cluster.local").unwrap(), 2);
        for bad in ["raftkv", "raftkv-", "raftkv-x", "raftkv-1a", "", "-", "raftkv-18446744073709551615"] {
            let err = id_from_hostname(bad).unwrap_err().to_string();
            assert!(err.contains("give --id"), "{bad:?}: {err}");
        }
    }
}
