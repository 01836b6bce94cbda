//! [`ProcessCollector`]: the process's CPU, memory and file descriptors, under the standard
//! `process_*` names every Prometheus client exports.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use crate::scrape_collector::{counter, gauge};

/// Reads `/proc/self` at each scrape. Several nodes in one process report the same figures.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        // A figure /proc does not give (another kernel, a restricted mount) is left out.
        let Ok(me) = procfs::process::Process::myself() else { return Ok(()) };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = (stat.utime + stat.stime) as f64 / ticks;
            counter(&mut e, "process_cpu", "User and system CPU time", Some(&Unit::Seconds), cpu)?;
            let rss = (stat.rss * procfs::page_size()) as i64;
            gauge(&mut e, "process_resident_memory", "Resident memory", Some(&Unit::Bytes), rss)?;
            gauge(&mut e, "process_virtual_memory", "Virtual memory", Some(&Unit::Bytes), stat.vsize as i64)?;
            gauge(&mut e, "process_threads", "OS threads", None, stat.num_threads)?;
            if let Ok(boot) = procfs::boot_time_secs() {
                let start = boot as f64 + stat.starttime as f64 / ticks;
                gauge(&mut e, "process_start_time", "Start time since the Unix epoch", Some(&Unit::Seconds), start)?;
            }
        }
        if let Ok(fds) = me.fd_count() {
            gauge(&mut e, "process_open_fds", "Open file descriptors", None, fds as i64)?;
        }
        if let Ok(limits) = me.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            gauge(&mut e, "process_max_fds", "Limit of open file descriptors", None, max as i64)?;
        }
        Ok(())
    }
}
