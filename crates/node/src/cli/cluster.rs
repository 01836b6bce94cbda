//! `raftkv cluster`: an example cluster of real `raftkv serve` processes on loopback.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftkv_client::Client;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use super::output::outln;

/// Arguments of `raftkv cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Directory for the nodes' data and logs (node-N/ and node-N.log); reused on the next run.
    #[arg(long, default_value = "raftkv-cluster")]
    data_dir: PathBuf,
    /// Port of node 1; node N listens on base-port + N - 1.
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Make a throwaway CA and node and client certificates (in DATA_DIR/tls, new each run) and
    /// run the cluster over TLS: members verify each other (mutual TLS), clients verify the
    /// nodes.
    #[arg(long)]
    tls: bool,
}

/// Writes the throwaway certificates of `raftkv cluster --tls` into `dir`: a new CA, one for
/// each of `nodes` (for 127.0.0.1 and localhost, naming its member id) and a client certificate.
fn example_tls(dir: &std::path::Path, nodes: u64) -> anyhow::Result<raftkv_tls::ThrowawayCluster> {
    let ca = raftkv_tls::ThrowawayCa::new("raftkv example cluster CA")?;
    let members: Vec<(u64, Vec<String>)> = (1..=nodes).map(|id| (id, Vec::new())).collect();
    Ok(ca.write_cluster(dir, &members, "raftkv-example-client")?)
}

/// The `raftkv serve` arguments of node `id` of an example cluster over TLS.
fn serve_args(tls: &raftkv_tls::ThrowawayCluster, id: u64) -> Vec<String> {
    let files = tls.member(id);
    let path = |p: &std::path::Path| p.display().to_string();
    vec![
        "--peer-tls-ca".into(),
        path(&files.ca),
        "--peer-tls-cert".into(),
        path(&files.cert),
        "--peer-tls-key".into(),
        path(&files.key),
    ]
}

struct Member {
    id: u64,
    url: String,
    args: Vec<String>,
    child: Option<Child>,
}

/// Starts the nodes, reports the leader as it changes, and stops them all on Ctrl-C or SIGTERM.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 99 {
        anyhow::bail!("--nodes must be between 1 and 99");
    }
    if u64::from(args.base_port) + args.nodes > 65_536 {
        anyhow::bail!("--base-port {} leaves no room for {} nodes", args.base_port, args.nodes);
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("create {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let exe = std::env::current_exe().context("locate the raftkv binary")?;
    let addr = |id: u64| format!("127.0.0.1:{}", u64::from(args.base_port) + id - 1);
    let initial: Vec<String> = (1..=args.nodes).map(|id| format!("{id}={}", addr(id))).collect();
    let initial = initial.join(",");
    let tls = if args.tls { Some(example_tls(&data_dir.join("tls"), args.nodes)?) } else { None };
    let scheme = if tls.is_some() { "https" } else { "http" };

    let mut members = Vec::new();
    for id in 1..=args.nodes {
        let mut node_args = vec![
            "serve".to_string(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            addr(id),
            "--data-dir".into(),
            data_dir.join(format!("node-{id}")).display().to_string(),
            "--initial-cluster".into(),
            initial.clone(),
        ];
        node_args.extend(tls.iter().flat_map(|t| serve_args(t, id)));
        members.push(Member { id, url: format!("{scheme}://{}", addr(id)), args: node_args, child: None });
    }
    for m in &mut members {
        let log_path = data_dir.join(format!("node-{}.log", m.id));
        m.child = Some(spawn(&exe, &m.args, &log_path)?);
        let pid = m.child.as_ref().and_then(Child::id).unwrap_or(0);
        outln!("node {} -> {}  (pid {pid}, log {})", m.id, m.url, log_path.display());
    }
    let endpoints: Vec<String> = members.iter().map(|m| m.url.clone()).collect();
    outln!("endpoints: {}", endpoints.join(","));
    if let Some(first) = endpoints.first() {
        outln!("dashboard: {first}/ui   metrics: {first}/metrics");
    }
    let client = match &tls {
        Some(tls) => {
            let client = tls.client();
            let ca = tls.ca();
            let ca = ca.display();
            let (cert, key) = (client.cert.clone().unwrap_or_default(), client.key.clone().unwrap_or_default());
            outln!("TLS: CA {ca}, client certificate {} (key {})", cert.display(), key.display());
            outln!("try: export RAFTKV_CACERT={ca}");
            outln!("     raftkv put hello world && raftkv get hello && raftkv status   (Ctrl-C stops the cluster)");
            if let Some(first) = endpoints.first() {
                outln!("     curl --cacert {ca} {first}/v1/status");
            }
            Client::with_tls(&endpoints, Duration::from_secs(2), &client)?
        }
        None => {
            outln!("try: raftkv put hello world && raftkv get hello && raftkv status   (Ctrl-C stops the cluster)");
            Client::with_timeout(&endpoints, Duration::from_secs(2))?
        }
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut last_leader = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => {}
        }
        for m in &mut members {
            if let Some(child) = &mut m.child
                && let Ok(Some(status)) = child.try_wait()
            {
                outln!("node {} exited ({status}); restart it with:\n  {} {}", m.id, exe.display(), m.args.join(" "));
                m.child = None;
            }
        }
        let leader = client.status().await.ok().and_then(|s| s.leader);
        if leader != last_leader {
            match leader {
                Some(l) => {
                    outln!("leader: node {l} ({})", members.iter().find(|m| m.id == l).map_or("?", |m| &m.url))
                }
                None => outln!("leader: none (election in progress)"),
            }
            last_leader = leader;
        }
    }

    outln!("stopping {} nodes", members.len());
    for m in &members {
        if let Some(pid) = m.child.as_ref().and_then(Child::id) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for m in &mut members {
        if let Some(child) = &mut m.child
            && tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err()
        {
            eprintln!("node {} did not stop within 10 s; killing it", m.id);
            let _ = child.kill().await;
        }
    }
    outln!("stopped");
    Ok(())
}

fn spawn(exe: &PathBuf, args: &[String], log: &PathBuf) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        // The nodes handle Ctrl-C through this process, not directly from the terminal.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", exe.display()))?;
    Ok(child)
}
