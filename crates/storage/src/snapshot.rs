//! Snapshot files: a point-in-time copy of the state machine, in a streamable format.
//!
//! ```text
//! magic      8 bytes  "RKVSNAP1"
//! header_len u32 LE   then the header: versioned bincode of SnapshotMeta
//! records    repeated: key_len u32 LE, key, value_len u32 LE, value   (in key order)
//! trailer    u32::MAX, then the record count as u64 LE
//! ```
//!
//! The format is read and written record by record, so neither building, sending nor installing a
//! snapshot holds the whole state in memory. The trailer makes a truncated file detectable.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use raftkv_types::SnapshotMeta;

use crate::codec::{decode, encode};
use crate::error::{Result, StorageError};

const MAGIC: &[u8; 8] = b"RKVSNAP1";
const END_MARKER: u32 = u32::MAX;
/// Keys and values are bounded far below this; anything larger is corruption.
const MAX_FIELD_LEN: u32 = 1 << 30;

/// A complete snapshot file on disk: the snapshot data that openraft passes between the state
/// machine and the network. The file is immutable once it has this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    path: PathBuf,
}

impl SnapshotFile {
    /// Wraps an existing, complete snapshot file.
    pub fn new(path: impl Into<PathBuf>) -> SnapshotFile {
        SnapshotFile { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole file, checking its framing and trailer, and returns its metadata. A file
    /// received from the network is verified before it is offered for installation.
    pub fn verify(&self) -> Result<SnapshotMeta> {
        let mut reader = SnapshotReader::open(&self.path)?;
        while reader.next_record()?.is_some() {}
        Ok(reader.meta().clone())
    }
}

/// Writes a snapshot file record by record; [`finish`](Self::finish) makes it durable.
pub struct SnapshotWriter {
    path: PathBuf,
    out: BufWriter<File>,
    count: u64,
}

impl SnapshotWriter {
    /// Creates `path` and writes the header for `meta`.
    pub fn create(path: impl Into<PathBuf>, meta: &SnapshotMeta) -> Result<SnapshotWriter> {
        let path = path.into();
        let file = File::create(&path).map_err(StorageError::io("create snapshot", &path))?;
        let mut writer = SnapshotWriter { out: BufWriter::with_capacity(1 << 20, file), path, count: 0 };
        let header = encode(meta)?;
        writer.write_all(MAGIC)?;
        writer.write_len(header.len())?;
        writer.write_all(&header)?;
        Ok(writer)
    }

    /// Appends one key-value record. Records must come in key order.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write_len(key.len())?;
        self.write_all(key)?;
        self.write_len(value.len())?;
        self.write_all(value)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the trailer and fsyncs the file.
    pub fn finish(mut self) -> Result<SnapshotFile> {
        self.write_all(&END_MARKER.to_le_bytes())?;
        self.write_all(&self.count.to_le_bytes())?;
        let file = self.out.into_inner().map_err(|e| StorageError::Io {
            op: "flush snapshot",
            path: self.path.display().to_string(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(StorageError::io("fsync snapshot", &self.path))?;
        Ok(SnapshotFile { path: self.path })
    }

    fn write_len(&mut self, len: usize) -> Result<()> {
        let len = u32::try_from(len)
            .ok()
            .filter(|l| *l < MAX_FIELD_LEN)
            .ok_or_else(|| StorageError::corrupt("snapshot record", "field too long"))?;
        self.write_all(&len.to_le_bytes())
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(StorageError::io("write snapshot", &self.path))
    }
}

/// Reads a snapshot file record by record.
pub struct SnapshotReader {
    input: BufReader<File>,
    meta: SnapshotMeta,
    count: u64,
    done: bool,
}

impl SnapshotReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<SnapshotReader> {
        let file = File::open(path).map_err(StorageError::io("open snapshot", path))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 8];
        read_exact(&mut input, &mut magic)?;
        if &magic != MAGIC {
            return Err(StorageError::corrupt("snapshot", "not a raftkv snapshot file"));
        }
        let len = read_u32(&mut input)?;
        if len >= MAX_FIELD_LEN {
            return Err(StorageError::corrupt("snapshot", "header too long"));
        }
        let mut header = vec![0u8; len as usize];
        read_exact(&mut input, &mut header)?;
        let meta = decode("snapshot header", &header)?;
        Ok(SnapshotReader { input, meta, count: 0, done: false })
    }

    /// The snapshot's metadata.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The next record, or `None` after the last one. A missing or wrong trailer is an error.
    pub fn next_record(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.done {
            return Ok(None);
        }
        let key_len = read_u32(&mut self.input)?;
        if key_len == END_MARKER {
            let mut count = [0u8; 8];
            read_exact(&mut self.input, &mut count)?;
            if u64::from_le_bytes(count) != self.count {
                return Err(StorageError::corrupt("snapshot", "record count does not match trailer"));
            }
            self.done = true;
            return Ok(None);
        }
        let key = read_field(&mut self.input, key_len)?;
        let value_len = read_u32(&mut self.input)?;
        let value = read_field(&mut self.input, value_len)?;
        self.count += 1;
        Ok(Some((key, value)))
    }
}

fn read_field(input: &mut impl Read, len: u32) -> Result<Vec<u8>> {
    if len >= MAX_FIELD_LEN {
        return Err(StorageError::corrupt("snapshot record", "field too long"));
    }
    let mut buf = vec![0u8; len as usize];
    read_exact(input, &mut buf)?;
    Ok(buf)
}

fn read_u32(input: &mut impl Read) -> Result<u32> {
    let mut buf = [0u8; 4];
    read_exact(input, &mut buf)?;
    Ok(u32::from_le_bytes(buf))
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => StorageError::corrupt("snapshot", "file is truncated"),
        _ => StorageError::Io { op: "read snapshot", path: String::new(), source: e },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftkv_types::StoredMembership;

    fn meta() -> SnapshotMeta {
        SnapshotMeta { last_log_id: None, last_membership: StoredMembership::default() }
    }

    #[test]
    fn writes_and_reads_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SnapshotWriter::create(dir.path().join("s"), &meta()).unwrap();
        w.push(b"a", b"1").unwrap();
        w.push(b"b", b"").unwrap();
        let file = w.finish().unwrap();
        let mut r = SnapshotReader::open(file.path()).unwrap();
        assert_eq!(r.next_record().unwrap(), Some((b"a".to_vec(), b"1".to_vec())));
        assert_eq!(r.next_record().unwrap(), Some((b"b".to_vec(), vec![])));
        assert_eq!(r.next_record().unwrap(), None);
        assert_eq!(file.verify().unwrap(), meta());
    }

    #[test]
    fn a_truncated_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SnapshotWriter::create(dir.path().join("s"), &meta()).unwrap();
        w.push(b"key", b"value").unwrap();
        let file = w.finish().unwrap();
        let bytes = std::fs::read(file.path()).unwrap();
        std::fs::write(file.path(), &bytes[..bytes.len() - 5]).unwrap();
        assert!(file.verify().is_err());
        std::fs::write(file.path(), b"garbage").unwrap();
        assert!(file.verify().is_err());
    }
}
