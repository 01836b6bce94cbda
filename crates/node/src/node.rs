//! [`Node`]: one running raftkv member.

mod cluster_ops;
mod failure;
mod kv_ops;
mod lease_ops;
mod membership_ops;
mod observability;
mod security;
mod session_ops;
mod startup;
mod watch_ops;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use prometheus_client::registry::Registry;
use raftkv_client::{Client, ClientError};
use raftkv_network::auth_gate::authorize;
use raftkv_network::network_metrics::track_requests;
use raftkv_network::{
    ApiError, ApiLimits, AuthGate, ClusterGuard, KvService, LeaderContact, LeaderProxy, MemberRpc, PeerNetwork,
    StorageGate, client_router, ops_only_router, ops_router, peer_router,
};
use raftkv_storage::{FileSummary, SnapshotHeader, StoreClosed, StoreOptions};
use raftkv_types::api::{BackupConsistency, Consistency, MembersResponse, NodeStatus};
use raftkv_types::{ClusterIdentity, NodeId, PeerNode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::append_clock::AppendClock;
use crate::cluster_tasks::{announce_return, found_cluster, join_cluster};
use crate::config::NodeConfig;
use crate::error::{NodeError, Result};
use crate::kv_handle::KvHandle;
use crate::node_metrics::NodeMetrics;
use crate::read_index::ReadIndexBatcher;

/// How long shutdown waits for in-flight HTTP requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a stopping node refuses new client requests (so that clients move on) before it closes
/// its connections.
const CLOSE_NOTICE: Duration = Duration::from_millis(300);
/// How long `shutdown` waits for the storage to be closed once Raft has stopped.
const STORE_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running raftkv node: storage, Raft and the HTTP server (client API and peer RPC on one port).
///
/// Usable in-process: [`Node::put`], [`Node::get`] and friends are the HTTP API as typed calls. A
/// call only the leader can serve is forwarded to it over HTTP when this node is a follower.
///
/// Call [`Node::shutdown`] to stop: it drains HTTP requests, then stops Raft, which leaves storage
/// consistent (it always is: a crash is recovered from too).
pub struct Node {
    handle: KvHandle,
    addr: SocketAddr,
    /// The operations port's address, when it has one.
    ops_addr: Option<SocketAddr>,
    /// This node's metrics, as `/metrics` serves them.
    registry: Arc<Registry>,
    stop_server: watch::Sender<bool>,
    /// The HTTP servers: the main port, and the operations port if any.
    servers: Vec<JoinHandle<()>>,
    forwarder: Arc<tokio::sync::Mutex<Option<(NodeId, Client)>>>,
    /// Asks the cluster to add this node, when started with `join`.
    joiner: Option<JoinHandle<()>>,
    /// Gives the cluster its identity once this node leads a cluster without one.
    founder: Option<JoinHandle<()>>,
    /// The autopilot and the leadership watcher.
    background: Vec<JoinHandle<()>>,
    /// How long this node says it will be away when it stops.
    restart_grace: Duration,
    /// Set at shutdown: answers carry `Connection: close` so that clients stop reusing
    /// connections before they are closed.
    draining: Arc<AtomicBool>,
    /// Resolves once the storage is closed.
    store_closed: StoreClosed,
}

impl Node {
    /// Opens storage, starts Raft and serves HTTP on `config.listen`. When the data directory holds
    /// no cluster state and `initial_cluster` is set, initialises the cluster with it; a node with
    /// existing state rejoins with what it has.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        config.validate()?;
        let (listener, addr) = startup::bind(&config.listen).await?;
        let ops = match &config.ops_listen {
            Some(ops) => Some(startup::bind(ops).await?),
            None => None,
        };

        if config.unsafe_no_fsync {
            tracing::warn!(
                "--unsafe-no-fsync: log appends and votes are NOT fsynced; a power loss will lose acknowledged writes (test use only)"
            );
        }
        let metrics = NodeMetrics::default();
        let options = StoreOptions {
            unsafe_no_fsync: config.unsafe_no_fsync,
            metrics: metrics.storage.clone(),
            history: config.watch_history,
        };
        let store = startup::open_store(&config.data_dir, config.id, options).await?;
        let store_closed = store.closed.clone();
        let state_machine = store.state_machine.clone();
        let raft_config = startup::raft_config(&config)?;
        let security = security::Security::open(&config)?;
        let peer_secret = security.access.secret.clone();
        let transport = security.access.transport.clone();
        let guard = ClusterGuard::new(state_machine.clone())
            .with_peer_secret(peer_secret.clone())
            .with_transport(transport.clone());
        let network = PeerNetwork::new(config.id, guard.clone(), metrics.network.clone())?;
        let raft = openraft::Raft::new(config.id, raft_config, network, store.log, store.state_machine)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        raft.set_metrics_recorder(Some(metrics.raft.clone())).await.map_err(|e| NodeError::Raft(e.to_string()))?;

        let rpc = MemberRpc::new(guard.clone())?;
        let contact = LeaderContact::new();
        let handle = KvHandle {
            id: config.id,
            raft: raft.clone(),
            state_machine: state_machine.clone(),
            limits: ApiLimits {
                max_value_bytes: config.max_value_bytes,
                leader_wait: config.leader_wait,
                ..ApiLimits::default()
            },
            write_timeout: config.write_timeout,
            read_timeout: config.read_timeout,
            reachable_within: Duration::from_millis(2 * config.raft.election_timeout_max_ms),
            contact: contact.clone(),
            clock: AppendClock::start(&raft),
            reads: ReadIndexBatcher::new(
                rpc.clone(),
                config.read_timeout,
                metrics.read_index_rounds.clone(),
                metrics.reads_per_round.clone(),
            ),
            rpc,
            membership_lock: Arc::default(),
            proposal_clock: Arc::default(),
            election_timeout: Duration::from_millis(config.raft.election_timeout_max_ms),
            autopilot: Arc::default(),
            leadership: Arc::new(watch::channel(crate::leadership::Leadership::default()).0),
            sync_degrade: Arc::default(),
            storage: StorageGate::new(config.min_free_disk_bytes),
            metrics: metrics.clone(),
            draining: Arc::new(AtomicBool::new(false)),
            access: security.access.clone(),
        };
        let registry = Arc::new(observability::node_registry(&handle));
        // A founder with an empty data directory initialises the cluster, unless another founder
        // already holds one (this node's data was lost).
        let founding = !config.initial_cluster.is_empty()
            && !raft.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))?;
        let holder = if founding {
            crate::cluster_tasks::a_founder_holds_a_cluster(config.id, &config.initial_cluster, &security.access).await
        } else {
            None
        };
        if let Some(peer) = holder {
            tracing::warn!(
                peer,
                "empty data directory, but founding member {peer} already holds the cluster: not initialising a new one; \
                 waiting for the leader to bring this node back (if this member was removed, add it again with raftkv member add-learner)"
            );
            if !crate::cluster_tasks::announce_data_lost(
                config.id,
                &config.initial_cluster,
                &handle.rpc,
                &security.access,
            )
            .await
            {
                tracing::warn!("no leader took the notice that this node lost its data; its replication may stall");
            }
        } else if founding {
            let members: BTreeMap<NodeId, PeerNode> =
                config.initial_cluster.iter().map(|(id, a)| (*id, PeerNode::new(a.clone()))).collect();
            tracing::info!(?members, "empty data directory: initialising the cluster");
            // Every founding member does this with the same membership; the entries are identical,
            // so whichever is elected first, the others agree. It happens before the server
            // accepts peer RPCs, so that a peer's vote request cannot get in first.
            match raft.initialize(members).await {
                Ok(()) => {}
                // A founding peer that initialised first may already have reached this node.
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    tracing::info!(%e, "not initialising: this node already has cluster state")
                }
                Err(e) => return Err(NodeError::Raft(format!("initialize: {e}"))),
            }
        }
        let draining = handle.draining.clone();
        let proxy = LeaderProxy::new(transport.clone())?;
        let gate = match &config.auth_file {
            Some(file) => AuthGate::from_file(file, peer_secret.clone(), transport.clone(), metrics.network.clone())
                .map_err(NodeError::Config)?,
            None => AuthGate::open(),
        };
        if !gate.enabled() {
            tracing::info!("no --auth-file: every client request is allowed");
        }
        let track = axum::middleware::from_fn_with_state(metrics.network.clone(), track_requests);
        let router = peer_router(raft.clone(), guard, contact, handle.storage.clone())
            .merge(client_router(handle.clone(), proxy.clone()))
            .merge(ops_router(handle.clone(), proxy.clone(), registry.clone()))
            .layer(axum::middleware::from_fn_with_state(gate.clone(), authorize))
            .layer(track.clone())
            .layer(axum::middleware::from_fn_with_state(draining.clone(), startup::refuse_when_draining));
        let (stop_server, stopped) = watch::channel(false);
        let mut servers = vec![startup::serve(listener, security.port_tls.clone(), router, stopped.clone())?];
        let ops_addr = match ops {
            Some((ops_listener, ops_addr)) => {
                let ops_router = ops_only_router(handle.clone(), proxy, registry.clone()).layer(track);
                servers.push(startup::serve(ops_listener, None, ops_router, stopped)?);
                Some(ops_addr)
            }
            None => None,
        };

        tracing::info!(id = config.id, %addr, ?ops_addr, data_dir = %config.data_dir.display(), "node started");
        let joiner = if config.join.is_empty() {
            None
        } else {
            let advertise = match &config.advertise {
                Some(a) => a.clone(),
                None if addr.ip().is_unspecified() => {
                    return Err(NodeError::Config(format!(
                        "listening on {addr}: give --advertise HOST:PORT, the address other members reach this node at"
                    )));
                }
                None => addr.to_string(),
            };
            let zone = config.zone.clone();
            let join = config.join.clone();
            let access = security.access.clone();
            Some(tokio::spawn(join_cluster(config.id, advertise, zone, config.standby, join, raft.clone(), access)))
        };
        let founder = Some(tokio::spawn(found_cluster(handle.clone())));
        let reloads = security.watch(gate, metrics.network.clone());
        let mut background = vec![
            tokio::spawn(handle.clone().run_autopilot()),
            tokio::spawn(handle.clone().watch_leadership()),
            tokio::spawn(announce_return(handle.clone())),
            tokio::spawn(handle.clone().watch_disk(config.data_dir.clone())),
            tokio::spawn(metrics.watch_leader(handle.clone())),
            tokio::spawn(handle.clone().keep_leases()),
        ];
        background.extend(reloads);
        Ok(Node {
            handle,
            addr,
            ops_addr,
            registry,
            stop_server,
            servers,
            forwarder: Arc::default(),
            joiner,
            founder,
            background,
            restart_grace: config.restart_grace,
            draining,
            store_closed,
        })
    }

    /// The cluster this node's data belongs to: its id and epoch. `None` until the cluster's
    /// first leader has founded it (a moment after the cluster first forms).
    pub fn cluster_identity(&self) -> Option<ClusterIdentity> {
        self.handle.state_machine.identity()
    }

    /// The revision of this node's applied state: data-changing commands applied so far.
    pub fn revision(&self) -> u64 {
        self.handle.state_machine.applied_meta().revision
    }

    /// Writes a backup of the cluster's state to the file `path` (`path.part` until it is
    /// complete, verified and fsynced; never a partial file under `path`). With
    /// [`BackupConsistency::Linearizable`] it holds every write acknowledged before the call,
    /// with `Stale` this node's applied state. Returns the backup's header and summary.
    pub async fn backup(&self, path: &Path, consistency: BackupConsistency) -> Result<(SnapshotHeader, FileSummary)> {
        if consistency == BackupConsistency::Linearizable {
            self.handle.ready_to_read(Consistency::Linearizable).await?;
        }
        let state_machine = self.handle.state_machine.clone();
        let path = path.to_path_buf();
        let written = tokio::task::spawn_blocking(move || state_machine.backup_to_file(&path, consistency))
            .await
            .map_err(|e| NodeError::Raft(format!("backup task: {e}")))?;
        Ok(written?)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.handle.id
    }

    /// The address the HTTP server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The operations port's address (`NodeConfig::ops_listen`), if it has one.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }

    /// The base URL of this node's HTTP API.
    pub fn url(&self) -> String {
        // The port is TLS exactly when members speak TLS to each other.
        self.handle.access.url(&self.addr.to_string())
    }

    /// This node's view of the cluster.
    pub async fn status(&self) -> Result<NodeStatus> {
        Ok(self.handle.status().await?)
    }

    /// Waits until some node is known as leader, up to `timeout`; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        let waited = self.handle.raft.wait(Some(timeout)).metrics(|m| m.current_leader.is_some(), "a leader").await;
        match waited {
            Ok(m) => Ok(m.current_leader.expect("waited for a leader")),
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                Err(NodeError::Api(ApiError::NotLeader { leader_id: None, leader: None }))
            }
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// The members as this node knows them.
    pub async fn members(&self) -> Result<MembersResponse> {
        Ok(self.handle.members().await?)
    }

    /// Stops the node: stops accepting requests, lets in-flight ones finish (up to 3 s), stops
    /// Raft, then waits (up to 5 s) until the storage is closed, so that the same data directory
    /// can be opened again at once. Everything acknowledged is on disk already.
    ///
    /// The storage closes once nothing uses it any more: a [`KvHandle`] clone kept by the caller
    /// holds it open, and the wait then ends at its timeout with a warning.
    pub async fn shutdown(self) -> Result<()> {
        if !self.restart_grace.is_zero() {
            self.announce_leaving().await;
        }
        let Node {
            handle,
            stop_server,
            servers,
            joiner,
            founder,
            background,
            draining,
            store_closed,
            forwarder,
            addr: _,
            ops_addr: _,
            registry: _,
            restart_grace: _,
        } = self;
        for task in [&joiner, &founder].into_iter().flatten().chain(&background) {
            task.abort();
        }
        // They hold handles on the storage: wait until they are gone.
        for task in founder.into_iter().chain(background) {
            let _ = task.await;
        }
        // First send active clients elsewhere (their next request is refused, certainly undone,
        // and the client library moves to another node), so that none sends a request on a
        // connection as it is closed.
        draining.store(true, Ordering::Relaxed);
        tokio::time::sleep(CLOSE_NOTICE).await;
        let _ = stop_server.send(true);
        if tokio::time::timeout(DRAIN_TIMEOUT, futures::future::join_all(servers)).await.is_err() {
            tracing::warn!("http requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
        handle.raft.shutdown().await.map_err(|e| NodeError::Raft(format!("shutdown: {e}")))?;
        let id = handle.id;
        drop((handle, forwarder, joiner));
        if !store_closed.wait(STORE_CLOSE_TIMEOUT).await {
            tracing::warn!(id, "storage still open {STORE_CLOSE_TIMEOUT:?} after stopping; something still holds it");
        }
        tracing::info!(id, "node stopped");
        Ok(())
    }

    /// Runs `local` on this node; when only the leader can serve it, runs `remote` against the
    /// leader over HTTP instead. A leader that cannot be connected to (nothing was sent) is
    /// waited out: the request is tried again once a new leader is known, within the leader wait.
    pub(crate) async fn with_leader<T, L, LF, R, RF>(&self, local: L, remote: R) -> Result<T>
    where
        L: Fn() -> LF,
        LF: Future<Output = std::result::Result<T, ApiError>>,
        R: Fn(Client) -> RF,
        RF: Future<Output = raftkv_client::Result<T>>,
    {
        let deadline = Instant::now() + self.handle.limits.leader_wait;
        loop {
            let (id, node) = match local().await {
                Ok(v) => return Ok(v),
                Err(ApiError::NotLeader { leader_id: Some(id), leader: Some(node) }) => (id, node),
                Err(e) => return Err(NodeError::Api(e)),
            };
            match remote(self.leader_client(id, &node).await?).await {
                Err(ClientError::Unreachable { .. }) if Instant::now() < deadline => {
                    self.handle.await_new_leader(Some(id), deadline).await;
                }
                result => return result.map_err(|source| NodeError::Forward { leader: Some(id), source }),
            }
        }
    }

    /// A client of leader `id` at `node`, reused while the leader stays the same.
    async fn leader_client(&self, id: NodeId, node: &PeerNode) -> Result<Client> {
        let mut cached = self.forwarder.lock().await;
        if let Some((cached_id, client)) = cached.as_ref()
            && *cached_id == id
        {
            return Ok(client.clone());
        }
        // One endpoint, the leader: a session's retries would only go back to it. Forwarded
        // writes keep the outcome the leader gives (as the HTTP API does).
        let client = self
            .handle
            .access
            .client([self.handle.access.url(&node.addr)], self.handle.limits.forward_timeout)
            .map_err(|source| NodeError::Forward { leader: Some(id), source })?
            .with_session_options(raftkv_client::SessionOptions { enabled: false, ..Default::default() });
        *cached = Some((id, client.clone()));
        Ok(client)
    }
}
