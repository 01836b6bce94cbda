//! `raftkv-jepsen`: check histories (and, with `run`, produce them).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raftkv_jepsen::checker::check;
use raftkv_jepsen::history::read_history;

/// Jepsen-style linearizability testing of raftkv.
#[derive(Debug, Parser)]
#[command(name = "raftkv-jepsen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a JSONL history: exit 0 linearizable, 1 not linearizable, 2 unknown.
    Check {
        /// The history file.
        history: PathBuf,
        /// Time budget of the check, in seconds.
        #[arg(long, default_value_t = 60)]
        budget_secs: u64,
        /// Print the per-key report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { history, budget_secs, json } => {
            let events = match File::open(&history)
                .map_err(|e| format!("cannot open {}: {e}", history.display()))
                .and_then(|f| read_history(BufReader::new(f)).map_err(|e| e.to_string()))
            {
                Ok(events) => events,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(3);
                }
            };
            let report = match check(&events, Duration::from_secs(budget_secs)) {
                Ok(report) => report,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(3);
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("report serialises"));
            }
            for violation in report.violations() {
                eprintln!("key {:?}: these operations cannot be ordered:", violation.key);
                for op in &violation.failing {
                    eprintln!("  {}", serde_json::to_string(op).expect("operation serialises"));
                }
            }
            println!("{}", report.summary());
            ExitCode::from(report.verdict.exit_code())
        }
    }
}
