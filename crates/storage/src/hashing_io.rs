//! Readers and writers that hash and count the bytes going through them, for the snapshot and
//! backup file format: the SHA-256 of everything before the trailer, and the offset of every
//! error.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Result, StorageError};

/// An I/O error while reading a snapshot or backup file (the caller names the path).
pub(crate) fn read_error(e: io::Error) -> StorageError {
    StorageError::Io { op: "read snapshot", path: String::new(), source: e }
}

/// A writer that hashes and counts what goes through it.
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: Sha256,
    pub(crate) written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), written: 0 }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it reads and knows its offset, so errors can say where they are.
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
    pub(crate) offset: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), offset: 0 }
    }

    pub(crate) fn read_exact_at(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let at = self.offset;
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(StorageError::Truncated {
                        reason: format!(
                            "file ends at byte {} while reading the {what} that starts at byte {at}",
                            at + filled as u64
                        ),
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        self.hasher.update(&buf[..]);
        self.offset += buf.len() as u64;
        Ok(())
    }

    pub(crate) fn read_u32(&mut self, what: &str) -> Result<u32> {
        let mut buf = [0u8; 4];
        self.read_exact_at(&mut buf, what)?;
        Ok(u32::from_le_bytes(buf))
    }

    pub(crate) fn read_u64(&mut self, what: &str) -> Result<u64> {
        let mut buf = [0u8; 8];
        self.read_exact_at(&mut buf, what)?;
        Ok(u64::from_le_bytes(buf))
    }
}
