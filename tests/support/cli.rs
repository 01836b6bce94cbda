//! Running the `raftkv` command line as a user would, and checking its answers.

use std::process::{Command, Output};

use super::raftkv_bin;

/// Runs `raftkv ARGS` to completion.
pub fn raftkv(args: &[&str]) -> Output {
    Command::new(raftkv_bin()).args(args).env("RUST_LOG", "warn").output().expect("run raftkv")
}

/// Runs `raftkv ARGS` and returns its standard output, panicking with its error output if it fails.
pub fn raftkv_ok(args: &[&str]) -> String {
    let out = raftkv(args);
    assert!(out.status.success(), "raftkv {} failed: {}", args.join(" "), stderr(&out));
    stdout(&out)
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a failure with exactly one line on stderr starting with "error:" (clap's usage errors
/// add a usage hint, so they are checked separately).
pub fn assert_one_line_error(out: &Output, contains: &str) {
    assert!(!out.status.success(), "expected failure, got {:?}", out.status);
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(contains), "got: {err}");
}
