//! `raftkv`: run a node, run an example cluster, or talk to a cluster.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(output) = e.downcast_ref::<cli::output::OutputError>() {
                // A closed pipe (`raftkv status | head`) means the reader has what it wanted.
                if output.is_closed_pipe() {
                    return ExitCode::SUCCESS;
                }
            }
            // One clear line: the error and its causes.
            let causes: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", dedup_causes(&causes));
            ExitCode::FAILURE
        }
    }
}

/// Joins an error chain, skipping causes already quoted by the message above them.
fn dedup_causes(causes: &[String]) -> String {
    let mut out = String::new();
    for cause in causes {
        if !out.contains(cause.as_str()) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(cause);
        }
    }
    out
}
