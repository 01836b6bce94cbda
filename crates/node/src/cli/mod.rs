//! Command line of the `raftkv` binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use raftkv_client::{Client, ClientTlsFiles};
use raftkv_types::NodeId;
use raftkv_types::api::{Consistency, Durability};

mod auth;
mod backup;
mod client_cmds;
mod cluster;
mod operations;
pub(crate) mod output;
mod recover;
mod serve;
mod watch_txn;

/// raftkv: a replicated key-value store on Raft.
#[derive(Debug, Parser)]
#[command(name = "raftkv", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node: client API and peer RPC on one port.
    Serve(Box<serve::ServeArgs>),
    /// Run an example cluster on loopback in the foreground; Ctrl-C stops it.
    Cluster(cluster::ClusterArgs),
    /// Write a value.
    Put {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The key.
        key: String,
        /// The value (use --file to read it from a file).
        #[arg(required_unless_present = "file")]
        value: Option<String>,
        /// Read the value from this file (`-` for standard input).
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        /// majority (acknowledged once a majority of voters has it) or all (once every
        /// member, learners included, has applied it).
        #[arg(long, default_value = "majority")]
        durability: Durability,
        /// Attach the key to this lease: it is deleted when the lease ends.
        #[arg(long, conflicts_with = "durability")]
        lease: Option<u64>,
        #[command(flatten)]
        dedup: WriteDedup,
    },
    /// Read a value; prints it as it is stored.
    Get {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The key.
        key: String,
        /// linearizable, lease or stale.
        #[arg(long, default_value = "linearizable")]
        consistency: Consistency,
        /// With --consistency stale: answer only if the node is at most this many ms behind the
        /// leader.
        #[arg(long)]
        max_lag_ms: Option<u64>,
        /// Which member reads: sticky (the first endpoint that answers), leader, any (spread over
        /// members, learners included) or nearest.
        #[arg(long, default_value = "sticky")]
        read_preference: raftkv_client::ReadPreference,
        /// Print the value's bytes only, never a trailing newline (the default when standard
        /// output is not a terminal).
        #[arg(long)]
        raw: bool,
        /// Print the key, value and revisions (create, mod, version, lease) as JSON.
        #[arg(long, conflicts_with_all = ["raw", "max_lag_ms"])]
        meta: bool,
    },
    /// Delete a key.
    Delete {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The key.
        key: String,
        #[command(flatten)]
        dedup: WriteDedup,
    },
    /// Compare and swap: set KEY to VALUE if it holds --expected (or is absent, with --absent).
    Cas {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The key.
        key: String,
        /// The new value.
        value: String,
        /// The value the key must hold.
        #[arg(long, required_unless_present = "absent", conflicts_with = "absent")]
        expected: Option<String>,
        /// The key must be absent.
        #[arg(long)]
        absent: bool,
        #[command(flatten)]
        dedup: WriteDedup,
    },
    /// List keys under a prefix.
    Scan {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Key prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Maximum keys.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// linearizable, lease or stale.
        #[arg(long, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Print changes under a prefix (or of one key) as they happen, in revision order; resumes
    /// on another node by itself.
    Watch {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The key prefix ("" for every key), or the key with --key.
        #[arg(default_value = "")]
        prefix: String,
        /// Watch exactly this key, not a prefix.
        #[arg(long)]
        key: bool,
        /// Start at this revision (inclusive); by default, after every write acknowledged so far.
        #[arg(long)]
        from: Option<u64>,
        /// Include each change's previous value (with --json).
        #[arg(long)]
        prev_kv: bool,
        /// Leave out puts.
        #[arg(long)]
        no_put: bool,
        /// Leave out deletes.
        #[arg(long)]
        no_delete: bool,
        /// Print each event as a JSON line (progress events included).
        #[arg(long)]
        json: bool,
        /// Exit after this many changes.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Leases: keys that vanish when their owner stops renewing.
    Lease {
        #[command(subcommand)]
        action: LeaseAction,
    },
    /// Run a transaction: the JSON body of POST /v1/txn, from FILE or standard input.
    Txn {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The file holding the transaction (`-` for standard input).
        #[arg(default_value = "-")]
        file: PathBuf,
        /// Print the JSON answer.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dedup: WriteDedup,
    },
    /// Show the members, their roles and how far each lags.
    Status {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Print the leader's raw JSON status instead of a table.
        #[arg(long)]
        json: bool,
        /// Redraw the status every --interval until interrupted.
        #[arg(long, short = 'w')]
        watch: bool,
        /// How often --watch redraws (e.g. 500ms, 2s).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
    },
    /// Membership: list, add learners, promote, remove, replace.
    Member {
        #[command(subcommand)]
        action: MemberAction,
    },
    /// Leadership.
    Leader {
        #[command(subcommand)]
        action: LeaderAction,
    },
    /// Values for an auth file: argon2id password hashes and bearer tokens.
    Auth {
        #[command(subcommand)]
        action: auth::AuthAction,
    },
    /// Backups: save, inspect, export, restore into a new cluster, schedule.
    Backup {
        #[command(subcommand)]
        action: backup::BackupAction,
    },
    /// Disaster recovery of stopped nodes: inspect survivors, force a new cluster.
    Recover {
        #[command(subcommand)]
        action: recover::RecoverAction,
    },
    /// The autopilot: replaces a dead voter by a standby. get, set, pause, resume.
    Autopilot {
        #[command(subcommand)]
        action: operations::AutopilotAction,
    },
    /// Probes one node: `live` (the process, its storage and its Raft run; never depends on a
    /// leader) or `ready` (also a member, in contact with a leader, caught up). Exits 0 when the
    /// probe passes, 1 when it does not: for container health checks without curl.
    Probe {
        /// `live` or `ready`.
        #[arg(value_parser = ["live", "ready"])]
        kind: String,
        /// HOST:PORT of the node.
        #[arg(long, default_value = "127.0.0.1:7001")]
        addr: String,
        /// Print every check, not only the verdict.
        #[arg(long)]
        verbose: bool,
        /// With `ready`: first wait up to this long (e.g. 30s) until the node has applied what
        /// the leader had committed when asked.
        #[arg(long, value_parser = humantime::parse_duration)]
        sync: Option<std::time::Duration>,
    },
    /// The cluster's health: per-member health and how many more voters it can lose. Exits 1
    /// when the cluster is not healthy.
    Health {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The cluster's event log: what the autopilot did and decided, settings changed, replication
    /// modes.
    Events {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Synchronous replication to zones (a DR site): get, set.
    Replication {
        #[command(subcommand)]
        action: operations::ReplicationAction,
    },
}

#[derive(Debug, Subcommand)]
enum MemberAction {
    /// List the members and their roles.
    List {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a running node as a learner (a non-voting read replica).
    AddLearner {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The new node's id.
        #[arg(long)]
        id: NodeId,
        /// The HOST:PORT the members reach it at.
        #[arg(long)]
        addr: String,
        /// The zone it runs in (a DR site, say), shown in status.
        #[arg(long)]
        zone: Option<String>,
        /// Add it as a standby, which the autopilot may promote to replace a dead voter.
        #[arg(long)]
        standby: bool,
    },
    /// Flag a learner as a standby (or, with --off, clear the flag).
    Standby {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The learner's id.
        id: NodeId,
        /// Clear the flag: a plain learner, never promoted automatically.
        #[arg(long)]
        off: bool,
    },
    /// Make a learner a voter.
    Promote {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The learner's id.
        id: NodeId,
        /// Do it even if the new voters would not include a reachable, caught-up quorum.
        #[arg(long)]
        force: bool,
    },
    /// Remove a member (voter or learner).
    Remove {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The member's id.
        id: NodeId,
        /// Do it even if the remaining voters would not include a reachable, caught-up quorum.
        #[arg(long)]
        force: bool,
    },
    /// Replace a voter by a new node: it joins as a learner, catches up, then the two swap.
    Replace {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The voter to replace.
        old: NodeId,
        /// The new node's id.
        #[arg(long)]
        id: NodeId,
        /// The new node's HOST:PORT.
        #[arg(long)]
        addr: String,
        /// Skip the quorum safety check.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LeaseAction {
    /// Grant a lease; prints its id.
    Grant {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Time to live after each renewal ("10s", "1m"; 1s to a week).
        #[arg(value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Renew a lease (once, or every --every until interrupted).
    Keepalive {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The lease id.
        id: u64,
        /// Renew this often until interrupted.
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<std::time::Duration>,
    },
    /// End a lease now, deleting its keys.
    Revoke {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The lease id.
        id: u64,
    },
    /// List the leases.
    List {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one lease: time to live, time left, keys.
    Show {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The lease id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LeaderAction {
    /// Hand leadership to a caught-up voter.
    Transfer {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The voter to lead.
        #[arg(long)]
        to: NodeId,
    },
}

/// How a write is made exactly-once.
#[derive(Debug, Args)]
pub(crate) struct WriteDedup {
    /// Make the write idempotent under this key (`Idempotency-Key`): running the same command
    /// again with the same key, say after a timeout, gets the first answer and applies nothing;
    /// the key on a different write is refused. Without it the write goes through a short
    /// client session, which makes this command's own retries exactly-once.
    #[arg(long, value_name = "KEY")]
    pub(crate) idempotency_key: Option<String>,
}

/// Where the cluster is, and how to reach it.
#[derive(Debug, Args)]
pub(crate) struct Endpoints {
    /// Comma-separated node URLs (`http://host:port`, `https://host:port`, or `host:port`,
    /// which is https with --cacert); any node will do.
    #[arg(
        long,
        env = "RAFTKV_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    pub(crate) endpoints: Vec<String>,
    /// Speak TLS, verifying the nodes' certificates against this CA (PEM).
    #[arg(long, env = "RAFTKV_CACERT", value_name = "FILE")]
    pub(crate) cacert: Option<PathBuf>,
    /// With --cacert: a client certificate (PEM) for nodes that ask for one, with --key.
    #[arg(long = "cert", id = "client_cert", env = "RAFTKV_CERT", value_name = "FILE", requires = "client_key")]
    pub(crate) client_cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long = "key", id = "client_key", env = "RAFTKV_KEY", value_name = "FILE", requires = "client_cert")]
    pub(crate) client_key: Option<PathBuf>,
    /// A bearer token for nodes with an auth file (raftkv auth new-token).
    #[arg(long, env = "RAFTKV_TOKEN", value_name = "TOKEN", hide_env_values = true, conflicts_with = "user")]
    pub(crate) token: Option<String>,
    /// A user for nodes with an auth file, as USER:PASSWORD, or USER with the password in
    /// RAFTKV_PASSWORD.
    #[arg(long, env = "RAFTKV_USER", value_name = "USER[:PASSWORD]", hide_env_values = true)]
    pub(crate) user: Option<String>,
}

impl Endpoints {
    /// A client of the endpoints, with a 15 s request timeout.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        self.client_with_timeout(std::time::Duration::from_secs(15))
    }

    /// A client of the endpoints, over TLS when --cacert is given, presenting --token or --user.
    pub(crate) fn client_with_timeout(&self, timeout: std::time::Duration) -> anyhow::Result<Client> {
        let client = self.bare_client(timeout)?;
        Ok(match self.credentials()? {
            Some(credentials) => client.with_credentials(&credentials)?,
            None => client,
        })
    }

    fn credentials(&self) -> anyhow::Result<Option<raftkv_client::Credentials>> {
        use raftkv_client::Credentials;
        if let Some(token) = &self.token {
            anyhow::ensure!(!token.trim().is_empty(), "--token is empty");
            return Ok(Some(Credentials::Token(token.trim().to_string())));
        }
        let Some(user) = &self.user else { return Ok(None) };
        let (user, password) = match user.split_once(':') {
            Some((user, password)) => (user.to_string(), password.to_string()),
            None => match std::env::var("RAFTKV_PASSWORD") {
                Ok(password) => (user.clone(), password),
                Err(_) => anyhow::bail!("--user {user}: give USER:PASSWORD, or the password in RAFTKV_PASSWORD"),
            },
        };
        anyhow::ensure!(!user.is_empty(), "--user needs a user name before ':'");
        Ok(Some(Credentials::Basic { user, password }))
    }

    fn bare_client(&self, timeout: std::time::Duration) -> anyhow::Result<Client> {
        match &self.cacert {
            Some(ca) => {
                let files = ClientTlsFiles {
                    ca: Some(ca.clone()),
                    cert: self.client_cert.clone(),
                    key: self.client_key.clone(),
                };
                Ok(Client::with_tls(&self.endpoints, timeout, &files)?)
            }
            None if self.client_cert.is_some() => {
                anyhow::bail!("--cert needs --cacert: client certificates go with TLS")
            }
            None => Ok(Client::with_timeout(&self.endpoints, timeout)?),
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Cluster(args) => cluster::run(args).await,
        Command::Put { endpoints, key, value, file, durability, lease, dedup } => {
            let writer = client_cmds::writer(&endpoints, &dedup)?;
            client_cmds::put(&writer, &key, value, file, durability, lease).await
        }
        Command::Lease { action } => match action {
            LeaseAction::Grant { endpoints, ttl } => watch_txn::lease_grant(&endpoints, ttl).await,
            LeaseAction::Keepalive { endpoints, id, every } => watch_txn::lease_keep_alive(&endpoints, id, every).await,
            LeaseAction::Revoke { endpoints, id } => watch_txn::lease_revoke(&endpoints, id).await,
            LeaseAction::List { endpoints, json } => watch_txn::lease_list(&endpoints, None, json).await,
            LeaseAction::Show { endpoints, id, json } => watch_txn::lease_list(&endpoints, Some(id), json).await,
        },
        Command::Get { endpoints, key, consistency, read_preference, meta: true, .. } => {
            client_cmds::get_meta(&endpoints, &key, consistency, read_preference).await
        }
        Command::Get { endpoints, key, consistency, max_lag_ms, read_preference, raw, meta: false } => {
            client_cmds::get(&endpoints, &key, consistency, max_lag_ms, read_preference, raw).await
        }
        Command::Delete { endpoints, key, dedup } => {
            client_cmds::delete(&client_cmds::writer(&endpoints, &dedup)?, &key).await
        }
        Command::Cas { endpoints, key, value, expected, absent: _, dedup } => {
            let writer = client_cmds::writer(&endpoints, &dedup)?;
            client_cmds::cas(&writer, &key, expected.as_deref(), &value).await
        }
        Command::Scan { endpoints, prefix, limit, consistency } => {
            client_cmds::scan(&endpoints, &prefix, limit, consistency).await
        }
        Command::Watch { endpoints, prefix, key, from, prev_kv, no_put, no_delete, json, count } => {
            let args =
                watch_txn::WatchArgs { target: prefix, exact_key: key, from, prev_kv, no_put, no_delete, json, count };
            watch_txn::watch(&endpoints, args).await
        }
        Command::Txn { endpoints, file, json, dedup } => {
            watch_txn::txn(&client_cmds::writer(&endpoints, &dedup)?, &file, json).await
        }
        Command::Status { endpoints, json, watch: false, .. } => client_cmds::status(&endpoints, json).await,
        Command::Status { endpoints, json, watch: true, interval } => {
            client_cmds::status_watch(&endpoints, json, interval).await
        }
        Command::Member { action } => match action {
            MemberAction::List { endpoints, json } => client_cmds::member_list(&endpoints, json).await,
            MemberAction::AddLearner { endpoints, id, addr, zone, standby } => {
                client_cmds::member_add_learner(&endpoints, id, &addr, zone.as_deref(), standby).await
            }
            MemberAction::Standby { endpoints, id, off } => operations::member_standby(&endpoints, id, !off).await,
            MemberAction::Promote { endpoints, id, force } => client_cmds::member_promote(&endpoints, id, force).await,
            MemberAction::Remove { endpoints, id, force } => client_cmds::member_remove(&endpoints, id, force).await,
            MemberAction::Replace { endpoints, old, id, addr, force } => {
                client_cmds::member_replace(&endpoints, old, id, &addr, force).await
            }
        },
        Command::Leader { action: LeaderAction::Transfer { endpoints, to } } => {
            client_cmds::leader_transfer(&endpoints, to).await
        }
        Command::Auth { action } => auth::run(action),
        Command::Backup { action } => backup::run(action).await,
        Command::Recover { action } => recover::run(action).await,
        Command::Autopilot { action } => operations::autopilot(action).await,
        Command::Health { endpoints, json } => operations::health(&endpoints, json).await,
        Command::Probe { kind, addr, verbose, sync } => operations::probe(&kind, &addr, verbose, sync).await,
        Command::Events { endpoints, json } => operations::events(&endpoints, json).await,
        Command::Replication { action } => operations::replication(action).await,
    }
}

/// Sets up logging: `RUST_LOG` picks the level (default `info`), `json` picks the format.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
