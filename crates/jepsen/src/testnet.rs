//! The test network: one Linux network namespace per node, joined by a bridge in a hub
//! namespace, with nftables rules to cut links. Needs root.
//!
//! ```text
//!  root ns (clients) ── veth ──┐
//!                        hub ns: bridge ── veth ── node ns 1 (10.213.T.11)
//!                                      ├── veth ── node ns 2 (10.213.T.12)
//!                                      └── veth ── node ns 3 (10.213.T.13)
//! ```
//!
//! The bridge lives in its own namespace so that the host's firewall (Docker's, for one) never
//! sees the traffic between nodes. Everything is removed on drop, also when a run is interrupted
//! (the harness turns SIGINT and SIGTERM into an orderly teardown).

use std::process::Command;

use anyhow::{Context, bail};

/// Name of the nftables table the harness owns in each node namespace.
const TABLE: &str = "raftkv_jepsen";

/// A network of `nodes` namespaces; node `i` (1-based) has address [`TestNet::addr`].
pub struct TestNet {
    tag: u8,
    nodes: usize,
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("run {}", args[0]))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl TestNet {
    /// Whether this process can build namespaces (it runs as root).
    pub fn available() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Builds the network under the first free tag (0-199) from `preferred`: the tag names the
    /// namespaces and the subnet `10.213.<tag>.0/24`, and keeps concurrent runs apart. A tag is
    /// claimed by creating its hub namespace, which fails if another run holds it.
    pub fn create(preferred: u8, nodes: usize) -> anyhow::Result<TestNet> {
        for offset in 0..200u16 {
            let tag = ((u16::from(preferred) + offset) % 200) as u8;
            let net = TestNet { tag, nodes };
            if run(&["ip", "netns", "add", &net.hub()]).is_err() {
                std::mem::forget(net); // someone else's: leave it alone
                continue;
            }
            net.build().inspect_err(|_| net.remove())?;
            return Ok(net);
        }
        bail!("no free test network tag: remove stale namespaces (`ip netns list`, names rkvj*)")
    }

    fn hub(&self) -> String {
        format!("rkvj{}-hub", self.tag)
    }

    /// The namespace of node `i`.
    pub fn netns(&self, i: usize) -> String {
        format!("rkvj{}-n{i}", self.tag)
    }

    /// The address of node `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.tag, 10 + i)
    }

    fn build(&self) -> anyhow::Result<()> {
        let hub = self.hub();
        let tag = self.tag;
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        run(&["ip", "-n", &hub, "link", "set", "lo", "up"])?;
        // The clients' link, from the root namespace.
        let root_if = format!("rkvj{tag}c");
        run(&["ip", "link", "add", &root_if, "type", "veth", "peer", "name", "client", "netns", &hub])?;
        run(&["ip", "-n", &hub, "link", "set", "client", "master", "br0", "up"])?;
        run(&["ip", "addr", "add", &format!("10.213.{tag}.1/24"), "dev", &root_if])?;
        run(&["ip", "link", "set", &root_if, "up"])?;
        for i in 1..=self.nodes {
            let ns = self.netns(i);
            let port = format!("n{i}");
            run(&["ip", "netns", "add", &ns])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run(&["ip", "-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            run(&["ip", "-n", &ns, "addr", "add", &format!("{}/24", self.addr(i)), "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "netns", "exec", &ns, "nft", "add", "table", "inet", TABLE])?;
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "nft",
                "add",
                "chain",
                "inet",
                TABLE,
                "input",
                "{ type filter hook input priority 0 ; policy accept ; }",
            ])?;
        }
        Ok(())
    }

    /// Drops every packet from node `from` to node `to` (a one-way cut).
    pub fn cut(&self, from: usize, to: usize) -> anyhow::Result<()> {
        let ns = self.netns(to);
        let saddr = self.addr(from);
        run(&["ip", "netns", "exec", &ns, "nft", "add", "rule", "inet", TABLE, "input", "ip", "saddr", &saddr, "drop"])
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways.
    pub fn split(&self, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
        for &x in a {
            for &y in b {
                self.cut(x, y)?;
                self.cut(y, x)?;
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 1..=self.nodes {
            run(&["ip", "netns", "exec", &self.netns(i), "nft", "flush", "chain", "inet", TABLE, "input"])?;
        }
        Ok(())
    }

    /// Deletes the namespaces (and with them every interface and rule), ignoring what is not there.
    fn remove(&self) {
        let _ = run(&["ip", "link", "del", &format!("rkvj{}c", self.tag)]);
        for i in 1..=self.nodes {
            let _ = run(&["ip", "netns", "del", &self.netns(i)]);
        }
        let _ = run(&["ip", "netns", "del", &self.hub()]);
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.remove();
    }
}
