//! The container deployment: `deploy/docker/build-image.sh` builds the image here without a
//! registry, `deploy/compose/docker-compose.yml` brings the three-node cluster up on it; a write
//! through one container survives killing the leader's container, and everything the test
//! created (containers, network, volumes, image) is removed at the end.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use support::{free_port, phase, wait_for};

fn docker_or_skip() -> bool {
    let ok = Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must run the compose test (Docker Engine is on the machine)");
        eprintln!("skipping: needs a running Docker Engine");
    }
    ok
}

/// `docker compose` (the plugin) where it exists, else the standalone `docker-compose`.
fn compose_command() -> Vec<&'static str> {
    let plugin = Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success());
    if plugin { vec!["docker", "compose"] } else { vec!["docker-compose"] }
}

/// One compose project, removed with its volumes and image when dropped.
struct Project {
    compose: Vec<&'static str>,
    name: String,
    file: String,
    image: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(self.compose[0])
            .args(&self.compose[1..])
            .args(["-p", &self.name, "-f", &self.file])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run compose")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "compose {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `raftkv ARGS` inside the service's container (on the cluster's own network).
    fn raftkv(&self, service: &str, args: &[&str]) -> Output {
        let mut all = vec!["exec", "-T", service, "/usr/local/bin/raftkv"];
        all.extend(args);
        self.run(&all)
    }

    fn health(&self, service: &str) -> String {
        let id = self.ok(&["ps", "-q", service]).trim().to_string();
        let out = Command::new("docker").args(["inspect", "-f", "{{.State.Health.Status}}", &id]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let down = self.run(&["down", "--volumes", "--remove-orphans", "--timeout", "5"]);
        if !down.status.success() {
            eprintln!("compose down failed: {}", String::from_utf8_lossy(&down.stderr));
        }
        let _ = Command::new("docker").args(["rmi", "-f", &self.image]).output();
    }
}

async fn status(port: u16) -> Option<raftkv::NodeStatus> {
    reqwest::get(format!("http://127.0.0.1:{port}/v1/status")).await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_containers_survive_the_leaders_container_being_killed() {
    if !docker_or_skip() {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let tag = format!("raftkv-test:{}", std::process::id());

    phase("build the image FROM scratch, bring the cluster up");
    let built = Command::new(format!("{root}/deploy/docker/build-image.sh"))
        .args(["--binary", &support::raftkv_bin().display().to_string(), "--tag", &tag])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut env = vec![("RAFTKV_IMAGE".to_string(), tag.clone())];
    for (i, port) in ports.iter().enumerate() {
        env.push((format!("RAFTKV{}_PORT", i + 1), port.to_string()));
        env.push((format!("RAFTKV{}_OPS_PORT", i + 1), free_port().to_string()));
    }
    let project = Project {
        compose: compose_command(),
        name: format!("raftkv-test-{}", std::process::id()),
        file: format!("{root}/deploy/compose/docker-compose.yml"),
        image: tag,
        env,
    };
    project.ok(&["up", "-d"]);
    for service in ["raftkv1", "raftkv2", "raftkv3"] {
        wait_for(Duration::from_secs(90), &format!("{service} healthy"), || async {
            (project.health(service) == "healthy").then_some(())
        })
        .await;
    }

    phase("a write through one container");
    wait_for(Duration::from_secs(60), "a write to be acknowledged", || async {
        project.raftkv("raftkv1", &["put", "compose-key", "hello"]).status.success().then_some(())
    })
    .await;
    let leader = wait_for(Duration::from_secs(30), "a leader", || async { status(ports[0]).await?.leader }).await;

    phase("the leader's container is killed: a new leader, and the write is still there");
    let dead = format!("raftkv{leader}");
    project.ok(&["kill", &dead]);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = wait_for(Duration::from_secs(60), "a new leader", || async {
        let s = status(ports[survivors[0] as usize - 1]).await?;
        s.leader.filter(|l| *l != leader)
    })
    .await;
    assert_ne!(new_leader, leader);
    let survivor = format!("raftkv{}", survivors[0]);
    let read = wait_for(Duration::from_secs(30), "the write read back", || async {
        let out = project.raftkv(&survivor, &["get", "compose-key"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    assert_eq!(read, "hello");
    drop(project);
}
