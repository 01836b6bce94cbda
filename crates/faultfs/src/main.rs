//! `raftkv-faultfs`: mounts the fault-injecting filesystem from the command line.
//!
//! ```text
//! raftkv-faultfs BACKING MOUNTPOINT [--fsync-delay 300ms]
//! ```
//!
//! Runs until SIGINT or SIGTERM, then unmounts. SIGUSR1 cuts the power (drops everything not
//! fsynced, and prints what it dropped); stop the processes using the mount first.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

/// Mounts a filesystem that keeps unsynced data in memory until fsync, drops it on SIGUSR1 (a
/// power cut), and can delay every fsync (a slow disk). Needs root.
#[derive(Parser)]
#[command(name = "raftkv-faultfs", version)]
struct Args {
    /// Directory holding the durable contents (in BACKING/data) and the filesystem's bookkeeping.
    backing: PathBuf,
    /// Existing empty directory to mount at.
    mountpoint: PathBuf,
    /// Answer every fsync this long after its data is durable, like a slow disk ("300ms", "2s").
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    fsync_delay: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Block the signals before the filesystem's threads start, so that only sigwait sees them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGUSR1] {
        signals.add(s);
    }
    signals.thread_block().context("block signals")?;
    let fs = raftkv_faultfs::FaultFs::mount(&args.backing, &args.mountpoint)?;
    let control = fs.control();
    control.set_fsync_delay(args.fsync_delay);
    eprintln!(
        "raftkv-faultfs: {} mounted over {} (fsync delay {})",
        args.mountpoint.display(),
        args.backing.display(),
        humantime::format_duration(args.fsync_delay)
    );
    while signals.wait().context("wait for a signal")? == Signal::SIGUSR1 {
        match control.power_cut() {
            Ok(cut) => eprintln!("raftkv-faultfs: power cut: {cut}"),
            Err(e) => eprintln!("raftkv-faultfs: power cut failed: {e}"),
        }
    }
    fs.unmount()?;
    Ok(())
}
