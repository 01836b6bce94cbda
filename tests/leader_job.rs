//! Leader-only work for embedders, with the `leader_job` example as three real processes: the
//! job runs on the leader only, moves to another instance when the leader is killed, and a deposed
//! leader's fenced writes are refused, by token and in practice (a leader paused while another is
//! elected cannot overwrite its successor's work when it resumes).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftkv::{Client, ClientError, Consistency, LeaderToken};
use support::{free_port, phase, raftkv_bin, wait_for};

/// The example binary, built next to `raftkv` by `cargo build --examples`.
fn example_bin() -> PathBuf {
    let bin = raftkv_bin().parent().expect("target dir").join("examples").join("leader_job");
    assert!(bin.exists(), "{} not found: run `cargo build --examples` first", bin.display());
    bin
}

/// One running instance of the example.
struct Instance {
    id: u64,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Instance {
    fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            kill(Pid::from_raw(child.id() as i32), signal).expect("signal");
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `(instance, term)` of a `job/last-run` record.
fn parse_record(record: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(record);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!((words[0], words[2]), ("instance", "term"), "{text}");
    (words[1].parse().unwrap(), words[3].parse().unwrap())
}

async fn last_run(client: &Client) -> Option<(u64, u64)> {
    client.get("job/last-run", Consistency::Linearizable).await.ok().flatten().map(|r| parse_record(&r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_follows_the_leader_and_a_deposed_leader_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let members: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
    let members = members.join(",");
    let spawn = |id: u64| {
        let log = dir.path().join(format!("instance-{id}.log"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(example_bin())
            .args([
                &id.to_string(),
                &addrs[id as usize - 1],
                &dir.path().join(format!("data-{id}")).display().to_string(),
                &members,
                "200",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn leader_job");
        Instance { id, child: Some(child), log }
    };
    let mut instances: Vec<Instance> = (1..=3u64).map(spawn).collect();
    let client = Client::with_timeout(addrs.iter().map(|a| format!("http://{a}")), Duration::from_secs(5)).unwrap();

    phase("the job runs on the leader only");
    // A cluster's first leadership may end at once in a new election (the job then restarts for
    // the new term): wait for a run of the leadership in place.
    let (first, first_term) = wait_for(Duration::from_secs(30), "a run by the current leader", || async {
        let (id, term) = last_run(&client).await?;
        let status = Client::new([format!("http://{}", addrs[id as usize - 1])]).ok()?.status().await.ok()?;
        (status.leader == Some(id) && status.term == term).then_some((id, term))
    })
    .await;
    for other in instances.iter().filter(|i| i.id != first) {
        let ran = format!("term {first_term} run");
        assert!(!other.output().contains(&ran), "instance {} ran the job in term {first_term} too", other.id);
    }

    phase(&format!("SIGKILL the leading instance {first}: the job moves"));
    let killed_at = Instant::now();
    let leader = instances.iter_mut().find(|i| i.id == first).unwrap();
    let mut child = leader.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let (second, second_term) = wait_for(Duration::from_secs(30), "the job on another instance", || async {
        last_run(&client).await.filter(|(id, _)| *id != first)
    })
    .await;
    let moved = killed_at.elapsed();
    eprintln!("the job moved from instance {first} to {second} in {moved:?} (election timeout 300-600 ms)");
    assert!(second_term > first_term);

    phase("a write with the dead leader's token is refused");
    let stale = LeaderToken { term: first_term, leader: first, since_index: 0 };
    match client.put_if_leader(stale, "job/last-run", "instance 9 term 0 run 0").await {
        Err(ClientError::Api { status: 409, code, .. }) => assert_eq!(code, "fenced"),
        other => panic!("a stale token's write was not fenced: {other:?}"),
    }

    phase(&format!("restart instance {first}, then pause the new leader {second} until another is elected"));
    instances.retain(|i| i.id != first);
    instances.push(spawn(first));
    let restarted = Client::new([format!("http://{}", addrs[first as usize - 1])]).unwrap();
    wait_for(Duration::from_secs(30), "the restarted instance to follow", || async {
        restarted.status().await.ok().filter(|s| s.leader == Some(second) && s.applied_index > 0).map(|_| ())
    })
    .await;
    let paused = instances.iter().find(|i| i.id == second).unwrap();
    paused.signal(Signal::SIGSTOP);
    let (_, third_term) = wait_for(Duration::from_secs(30), "the job on the third instance", || async {
        last_run(&client).await.filter(|(id, _)| *id != second)
    })
    .await;
    assert!(third_term > second_term);
    paused.signal(Signal::SIGCONT);
    // The resumed instance believes it leads until it hears otherwise, and its job writes with
    // its old token: none of those writes may land after its successor's.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut newest = third_term;
    while Instant::now() < deadline {
        if let Some((_, term)) = last_run(&client).await {
            assert!(term >= newest, "a deposed leader's write (term {term}) landed after term {newest}");
            newest = term;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed = wait_for(Duration::from_secs(20), "the resumed instance to stop its job", || async {
        let out = paused.output();
        (out.contains("no longer leads") || out.contains("fenced")).then_some(out)
    })
    .await;
    eprintln!("resumed instance {second}: {}", resumed.lines().rev().take(3).collect::<Vec<_>>().join(" | "));
}
