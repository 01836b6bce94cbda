//! Resource use of the servers under test, read from /proc: CPU seconds and peak RSS per process,
//! and how busy the whole machine is.

use std::time::Duration;

/// Clock ticks per second of /proc's CPU times (Linux's USER_HZ, 100 on every mainstream arch).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) used so far by the processes `pids`, summed; missing ones count 0.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name, which is in parentheses and may contain spaces.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / TICKS_PER_SEC)
        })
        .sum()
}

/// Peak resident set size (VmHWM) of each process, in MiB.
pub fn peak_rss_mib(pids: &[u32]) -> Vec<f64> {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|kb| kb.parse::<f64>().ok())
                })
                .map_or(0.0, |kb| kb / 1024.0)
        })
        .collect()
}

fn cpu_totals() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let idle = values.get(3)? + values.get(4).unwrap_or(&0);
    Some((values.iter().sum(), idle))
}

/// Fraction of the machine's CPU in use over the next `window` (0.0 to 1.0).
pub async fn machine_busy(window: Duration) -> f64 {
    let Some((total0, idle0)) = cpu_totals() else { return 0.0 };
    tokio::time::sleep(window).await;
    let Some((total1, idle1)) = cpu_totals() else { return 0.0 };
    let total = total1.saturating_sub(total0).max(1) as f64;
    1.0 - idle1.saturating_sub(idle0) as f64 / total
}
