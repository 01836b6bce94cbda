//! [`ProcessCollector`]: the process's CPU, memory and file descriptors, under the standard
//! `process_*` names every Prometheus client exports.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Reads `/proc/self` at each scrape. Several nodes in one process report the same figures.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        // A figure /proc does not give (another kernel, a restricted mount) is left out.
        let Ok(me) = procfs::process::Process::myself() else { return Ok(()) };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
            cpu.encode(e.encode_descriptor(
                "process_cpu",
                "User and system CPU time",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?)?;
            let rss = ConstGauge::new((stat.rss * procfs::page_size()) as i64);
            rss.encode(e.encode_descriptor(
                "process_resident_memory",
                "Resident memory",
                Some(&Unit::Bytes),
                rss.metric_type(),
            )?)?;
            let vsize = ConstGauge::new(stat.vsize as i64);
            vsize.encode(e.encode_descriptor(
                "process_virtual_memory",
                "Virtual memory",
                Some(&Unit::Bytes),
                vsize.metric_type(),
            )?)?;
            let threads = ConstGauge::new(stat.num_threads);
            threads.encode(e.encode_descriptor("process_threads", "OS threads", None, threads.metric_type())?)?;
            if let Ok(boot) = procfs::boot_time_secs() {
                let start = ConstGauge::new(boot as f64 + stat.starttime as f64 / ticks);
                start.encode(e.encode_descriptor(
                    "process_start_time",
                    "Start time since the Unix epoch",
                    Some(&Unit::Seconds),
                    start.metric_type(),
                )?)?;
            }
        }
        if let Ok(fds) = me.fd_count() {
            let open = ConstGauge::new(fds as i64);
            open.encode(e.encode_descriptor("process_open_fds", "Open file descriptors", None, open.metric_type())?)?;
        }
        if let Ok(limits) = me.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            let max = ConstGauge::new(max as i64);
            max.encode(e.encode_descriptor(
                "process_max_fds",
                "Limit of open file descriptors",
                None,
                max.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
