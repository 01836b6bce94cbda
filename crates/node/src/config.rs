//! Configuration of one node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use raftkv_types::NodeId;

use crate::error::{NodeError, Result};

/// Everything a [`crate::Node`] needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id: unique in the cluster and stable for the life of `data_dir`.
    pub id: NodeId,
    /// Address the HTTP server binds (client API and peer RPC), e.g. `127.0.0.1:7001`. Port 0 picks
    /// a free port (see [`crate::Node::addr`]).
    pub listen: String,
    /// Directory of the node's RocksDB and snapshots. Created if missing.
    pub data_dir: PathBuf,
    /// The founding members, `id -> host:port`, used only when the data directory is empty: the
    /// node then initialises the cluster with them. Must include this node. Empty: start without
    /// bootstrapping (wait to be added).
    pub initial_cluster: BTreeMap<NodeId, String>,
    /// Base URLs of members of an existing cluster to join as a learner, e.g.
    /// `http://10.0.0.1:7001`. The node asks them to add it (at [`NodeConfig::advertise`]) and
    /// keeps asking until it is a member. Exclusive with `initial_cluster`.
    pub join: Vec<String>,
    /// The `host:port` other members reach this node at. By default, the address bound.
    pub advertise: Option<String>,
    /// The zone this node runs in (a site or data centre name), given to the cluster when it
    /// joins with [`NodeConfig::join`] and shown in status. By default, none.
    pub zone: Option<String>,
    /// Join as a standby: a learner the autopilot may promote to replace a dead voter (with
    /// [`NodeConfig::join`]). By default, a plain learner.
    pub standby: bool,
    /// How long this node tells the leader it will be away when it is stopped
    /// ([`crate::Node::shutdown`]), so that the autopilot does not replace it during a planned
    /// restart. Zero: it says nothing. By default, 5 minutes.
    pub restart_grace: Duration,
    /// Raft timing and compaction.
    pub raft: RaftTuning,
    /// Largest value accepted, in bytes. By default, 1 MiB.
    pub max_value_bytes: usize,
    /// How long a write may wait to be committed and applied before answering `outcome_unknown`.
    /// By default, 5 s.
    pub write_timeout: Duration,
    /// How long a linearizable read may wait for leadership confirmation and apply. By default, 5 s.
    pub read_timeout: Duration,
    /// How long a request that finds no leader (an election is running, or the leader lost its
    /// quorum) waits for one before answering 503. Such a request was not proposed, so waiting
    /// and retrying it is safe. By default, 3 s.
    pub leader_wait: Duration,
    /// **Test only; loses acknowledged writes on power loss.** Never fsync log appends and votes
    /// (see `raftkv_storage::StoreOptions::unsafe_no_fsync`). By default, false; nothing turns it
    /// on but setting it.
    pub unsafe_no_fsync: bool,
    /// Free space kept on the data directory's filesystem: below it the node refuses writes (as
    /// leader, with `507 insufficient_storage`) and log appends, and a leader hands its
    /// leadership to a voter with room. 0: never refuse. By default, 64 MiB.
    pub min_free_disk_bytes: u64,
    /// A second, plain-HTTP address serving only `/metrics`, `/livez`, `/readyz`, the `/ui`
    /// dashboard and the read-only status it polls, e.g. `0.0.0.0:9090`: for probes and scrapers
    /// that must keep working whatever the main port requires. By default, none (they are on the
    /// main port too).
    pub ops_listen: Option<String>,
    /// How much watch history the node keeps (see `docs/api.md`, Watches): by default the last
    /// 100 000 revisions, at most one hour old by the state-machine clock. A watch that starts
    /// below it is refused with `410 compacted`.
    pub watch_history: raftkv_storage::HistoryRetention,
    /// The auth file (TOML; `docs/operations.md`, Authentication): who may do what on the client
    /// API. Reloaded when it changes. By default none: every request is allowed. Needs
    /// [`NodeConfig::peer_secret`], without which anyone could speak Raft to the node instead.
    pub auth_file: Option<PathBuf>,
    /// The secret every member of the cluster shares (at least 16 bytes): peer RPC must present
    /// it, and with an auth file it is the members' own credential. By default none.
    pub peer_secret: Option<String>,
    /// TLS for the node's port (`--tls-cert`, `--tls-key`, `--tls-client-ca`,
    /// `--tls-client-auth`): its certificate, and whether clients present certificates of the
    /// client CA. Needs [`NodeConfig::peer_tls`]: members share the port. Reloaded when the
    /// files change. By default none: plain HTTP.
    pub tls: Option<raftkv_tls::ServerTlsFiles>,
    /// Members' mutual TLS (`--peer-tls-ca`, `--peer-tls-cert`, `--peer-tls-key`): every
    /// connection between members is TLS, each side verifying the other's certificate against
    /// the peer CA, and a member's certificate must name its member id (a URI name
    /// `spiffe://raftkv/node/<id>`); a peer RPC speaks only for the member its certificate
    /// names. Without [`NodeConfig::tls`], the peer certificate serves clients too. Reloaded
    /// when the files change. By default none.
    pub peer_tls: Option<raftkv_tls::PeerTlsFiles>,
}

/// Raft timing and log compaction. The defaults suit a LAN: an election starts 300-600 ms after
/// the leader goes silent, heartbeats every 100 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTuning {
    /// Heartbeat interval, ms. Keep it well under the election timeout. By default, 100.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomised election timeout, ms. By default, 300.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout, ms. By default, 600.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one. By default, 20 000.
    pub snapshot_every: u64,
    /// Log entries kept behind the snapshot, so that a briefly lagging follower catches up from
    /// the log rather than with a snapshot. By default, 5 000.
    pub keep_logs_after_snapshot: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every: 20_000,
            keep_logs_after_snapshot: 5_000,
        }
    }
}

impl NodeConfig {
    /// The TLS files of the node's port, if it is TLS: [`NodeConfig::tls`] (or the peer
    /// certificate), accepting member certificates of the peer CA too.
    pub fn port_tls(&self) -> Option<raftkv_tls::ServerTlsFiles> {
        let peer = self.peer_tls.as_ref()?;
        let mut files = self.tls.clone().unwrap_or_else(|| raftkv_tls::ServerTlsFiles {
            cert: peer.cert.clone(),
            key: peer.key.clone(),
            client_ca: None,
            client_auth: raftkv_tls::ClientAuth::Off,
            peer_ca: None,
        });
        files.peer_ca = Some(peer.ca.clone());
        Some(files)
    }

    /// A configuration with defaults for everything but identity, address and data directory.
    pub fn new(id: NodeId, listen: impl Into<String>, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            id,
            listen: listen.into(),
            data_dir: data_dir.into(),
            initial_cluster: BTreeMap::new(),
            join: Vec::new(),
            advertise: None,
            zone: None,
            standby: false,
            restart_grace: Duration::from_secs(300),
            raft: RaftTuning::default(),
            max_value_bytes: 1 << 20,
            write_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            leader_wait: Duration::from_secs(3),
            unsafe_no_fsync: false,
            min_free_disk_bytes: 64 << 20,
            ops_listen: None,
            watch_history: raftkv_storage::HistoryRetention::default(),
            auth_file: None,
            peer_secret: None,
            tls: None,
            peer_tls: None,
        }
    }

    /// Sets the founding members (see [`NodeConfig::initial_cluster`]).
    pub fn with_initial_cluster(mut self, members: BTreeMap<NodeId, String>) -> NodeConfig {
        self.initial_cluster = members;
        self
    }

    /// Joins the cluster at `endpoints` as a learner (see [`NodeConfig::join`]).
    pub fn with_join<I: IntoIterator<Item = S>, S: Into<String>>(mut self, endpoints: I) -> NodeConfig {
        self.join = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// Checks the configuration for mistakes that would only show later.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(NodeError::Config(msg));
        if self.id == 0 {
            return bad("node id must be a positive integer".into());
        }
        if !self.initial_cluster.is_empty() && !self.join.is_empty() {
            return bad("--initial-cluster founds a new cluster and --join joins an existing one: give one".into());
        }
        if !self.initial_cluster.is_empty() && !self.initial_cluster.contains_key(&self.id) {
            return bad(format!("--initial-cluster does not include this node's id {}", self.id));
        }
        if let Some(zone) = &self.zone {
            if !raftkv_network::client_router::valid_zone(zone) {
                return bad(format!("--zone must be 1 to 64 letters, digits, '-', '_' or '.', got {zone:?}"));
            }
            if self.join.is_empty() {
                return bad("--zone is given to the cluster when the node joins: use it with --join".into());
            }
        }
        if self.standby && self.join.is_empty() {
            return bad("--standby makes the node join as a standby: use it with --join".into());
        }
        let t = &self.raft;
        if t.heartbeat_ms == 0 || t.heartbeat_ms >= t.election_timeout_min_ms {
            return bad(format!(
                "heartbeat interval ({} ms) must be above 0 and below the election timeout ({} ms)",
                t.heartbeat_ms, t.election_timeout_min_ms
            ));
        }
        if t.election_timeout_min_ms >= t.election_timeout_max_ms {
            return bad(format!(
                "election timeout min ({} ms) must be below max ({} ms)",
                t.election_timeout_min_ms, t.election_timeout_max_ms
            ));
        }
        if t.snapshot_every == 0 {
            return bad("snapshot interval must be at least 1 entry".into());
        }
        if self.max_value_bytes == 0 {
            return bad("max value size must be at least 1 byte".into());
        }
        if let Some(secret) = &self.peer_secret {
            raftkv_network::PeerSecret::new(secret).map_err(NodeError::Config)?;
        }
        if self.auth_file.is_some() && self.peer_secret.is_none() && self.peer_tls.is_none() {
            return bad(
                "--auth-file needs peer TLS (--peer-tls-*) or --peer-secret-file: without either, anyone who reaches the port could speak Raft to the node and bypass the auth file"
                    .into(),
            );
        }
        if self.tls.is_some() && self.peer_tls.is_none() {
            return bad(
                "--tls-cert needs peer TLS too (--peer-tls-ca, --peer-tls-cert, --peer-tls-key): members share the TLS port and must verify each other"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Parses `1=host:port,2=host:port,...`.
pub fn parse_members(s: &str) -> Result<BTreeMap<NodeId, String>> {
    let mut members = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| NodeError::Config(format!("member {part:?} is not of the form ID=HOST:PORT")))?;
        let id: NodeId =
            id.trim().parse().map_err(|_| NodeError::Config(format!("member id {id:?} is not a number")))?;
        let addr = addr.trim();
        if addr.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
            return Err(NodeError::Config(format!("member {id} address {addr:?} is not HOST:PORT")));
        }
        if members.insert(id, addr.to_string()).is_some() {
            return Err(NodeError::Config(format!("member id {id} appears twice")));
        }
    }
    if members.is_empty() {
        return Err(NodeError::Config("no members given".into()));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_member_lists_and_rejects_bad_ones() {
        let m = parse_members("1=127.0.0.1:7001, 2=localhost:7002").unwrap();
        assert_eq!(m[&1], "127.0.0.1:7001");
        assert_eq!(m[&2], "localhost:7002");
        for bad in ["", "1", "x=a:1", "1=a", "1=a:1,1=b:2", "1=a:99999"] {
            assert!(parse_members(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn validation_catches_inconsistent_settings() {
        let mut c = NodeConfig::new(4, "127.0.0.1:0", "/tmp/x").with_initial_cluster(parse_members("1=a:1").unwrap());
        assert!(c.validate().is_err());
        c.initial_cluster.clear();
        assert!(c.validate().is_ok());
        c.raft.heartbeat_ms = 1000;
        assert!(c.validate().is_err());
    }
}
