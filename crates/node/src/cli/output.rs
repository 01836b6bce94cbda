//! Standard output for the commands, as a Unix tool writes it.
//!
//! `println!` panics when standard output fails (a closed pipe under `raftkv status | head -5`,
//! a full disk under `> /dev/full`). Commands print through [`outln!`] instead: a failed write
//! becomes an [`OutputError`], which `main` turns into a quiet exit for a closed pipe and one line
//! and a non-zero exit for anything else.

use std::fmt;
use std::io::{self, Write};

/// Writing to standard output failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {0}")]
pub struct OutputError(#[source] pub io::Error);

impl OutputError {
    /// The reader went away (`| head`): not a failure of the command.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Writes `args` and a newline to standard output, then flushes, so that an error shows here and
/// not in the exit-time flush, where it would be ignored.
pub fn write_line(args: fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).map_err(OutputError)
}

/// Writes bytes as they are to standard output and flushes.
pub fn write_bytes(bytes: &[u8]) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).map_err(OutputError)
}

/// Whether standard output is a terminal.
pub fn is_terminal() -> bool {
    io::IsTerminal::is_terminal(&io::stdout())
}

/// `println!` that returns an [`OutputError`] from the enclosing function instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::output::write_line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*))?
    };
}
pub(crate) use outln;
