//! The file format of snapshots and backups: a point-in-time copy of the state machine, streamed
//! record by record and checksummed twice over.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "RKVSNAP2"
//! 8       4     header_len, u32 little-endian
//! 12      4     header_crc, CRC32C of the header bytes, u32 LE
//! 16      n     header: JSON of SnapshotHeader (format_version, kind, identity, revision, ...)
//! then, repeated, one chunk per about 1 MiB of records:
//!         1     tag 0x01
//!         4     payload_len, u32 LE (at most 64 MiB)
//!         4     crc32c of the payload, u32 LE
//!         p     payload: records, each key_len u32 LE, key, value_len u32 LE, value, in key order
//! then the trailer:
//!         1     tag 0xFF
//!         8     record_count, u64 LE: records in all chunks
//!         8     payload_bytes, u64 LE: payload bytes in all chunks
//!         32    SHA-256 of every byte of the file before these 32
//! end of file
//! ```
//!
//! The per-chunk CRC32C finds a damaged chunk as soon as it is read, before any of its records are
//! used; the SHA-256 over the whole file proves it complete and unaltered end to end (it is what
//! `raftkv backup save` prints). Readers and writers hold one chunk in memory at a time, whatever
//! the size of the state, so building, sending, verifying and installing a snapshot, and taking or
//! restoring a backup, all run in bounded memory.
//!
//! Format 1 (`RKVSNAP1`: no checksums, bincode header) is not read: a data directory upgraded from
//! format 1 drops its format-1 snapshots, which openraft rebuilds from the state machine.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::{Result, StorageError};
use crate::hashing_io::{HashingReader, HashingWriter, read_error};
use crate::snapshot_header::{FILE_FORMAT_VERSION, READABLE_FORMAT_VERSIONS, SnapshotHeader};
use crate::state_record::StateRecord;

const MAGIC: &[u8; 8] = b"RKVSNAP2";
const MAGIC_V1: &[u8; 8] = b"RKVSNAP1";
const TAG_CHUNK: u8 = 0x01;
const TAG_TRAILER: u8 = 0xFF;
/// A chunk is closed once its payload reaches this size.
const CHUNK_TARGET_BYTES: usize = 1 << 20;
/// Chunks, headers and fields are bounded far below these; anything larger is corruption.
const MAX_CHUNK_BYTES: u32 = 64 << 20;
const MAX_HEADER_BYTES: u32 = 16 << 20;

/// A complete snapshot file on disk: the snapshot data that openraft passes between the state
/// machine and the network. The file is immutable once it has this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    path: PathBuf,
}

/// What a complete pass over a file found: its size, record count and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// Records (keys) in the file.
    pub records: u64,
    /// Bytes of record payload (keys, values and their lengths).
    pub payload_bytes: u64,
    /// Size of the whole file.
    pub file_bytes: u64,
    /// SHA-256 of the file before the hash itself, lowercase hex.
    pub sha256: String,
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

    /// Reads the whole file, checking every chunk checksum, the trailer and the SHA-256, and
    /// returns its header and summary. A file received from the network is verified before it is
    /// offered for installation.
    pub fn verify(&self) -> Result<(SnapshotHeader, FileSummary)> {
        let mut reader = SnapshotReader::open(&self.path)?;
        while reader.next_record()?.is_some() {}
        let summary = reader.summary().expect("the trailer was read");
        Ok((reader.header().clone(), summary))
    }
}

/// Writes a snapshot or backup file record by record, to a file or any other byte sink (an HTTP
/// body). [`finish`](Self::finish) writes the trailer.
pub struct SnapshotWriter<W: Write> {
    out: HashingWriter<W>,
    chunk: Vec<u8>,
    records: u64,
    payload_bytes: u64,
}

impl SnapshotWriter<BufWriter<File>> {
    /// Creates the file `path` and writes `header`.
    pub fn create(path: &Path, header: &SnapshotHeader) -> Result<Self> {
        let file = File::create(path).map_err(StorageError::io("create snapshot", path))?;
        SnapshotWriter::new(BufWriter::with_capacity(1 << 20, file), header)
            .map_err(|e| e.at_path("write snapshot", path))
    }

    /// Writes the trailer, then fsyncs the file (not its directory: the caller renames it into
    /// place and syncs that).
    pub fn finish_file(self, path: &Path) -> Result<(SnapshotFile, FileSummary)> {
        let (out, summary) = self.finish().map_err(|e| e.at_path("write snapshot", path))?;
        let file = out.into_inner().map_err(|e| StorageError::io("flush snapshot", path)(e.into_error()))?;
        file.sync_all().map_err(StorageError::io("fsync snapshot", path))?;
        Ok((SnapshotFile::new(path), summary))
    }
}

impl<W: Write> SnapshotWriter<W> {
    /// Writes the magic and `header` to `out`.
    pub fn new(out: W, header: &SnapshotHeader) -> Result<Self> {
        let mut writer = SnapshotWriter {
            out: HashingWriter::new(out),
            chunk: Vec::with_capacity(CHUNK_TARGET_BYTES + 4096),
            records: 0,
            payload_bytes: 0,
        };
        let json = serde_json::to_vec(header).map_err(|e| StorageError::corrupt("snapshot header", e))?;
        let len = u32::try_from(json.len()).ok().filter(|l| *l < MAX_HEADER_BYTES);
        let len = len.ok_or_else(|| StorageError::corrupt("snapshot header", "header too long"))?;
        writer.write(MAGIC)?;
        writer.write(&len.to_le_bytes())?;
        writer.write(&crc32c::crc32c(&json).to_le_bytes())?;
        writer.write(&json)?;
        Ok(writer)
    }

    /// Appends one key-value record. Records must come in key order.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let field = |len: usize| {
            u32::try_from(len)
                .ok()
                .filter(|l| *l < MAX_CHUNK_BYTES / 2)
                .ok_or_else(|| StorageError::corrupt("snapshot record", "field too long"))
        };
        let (key_len, value_len) = (field(key.len())?, field(value.len())?);
        self.chunk.extend_from_slice(&key_len.to_le_bytes());
        self.chunk.extend_from_slice(key);
        self.chunk.extend_from_slice(&value_len.to_le_bytes());
        self.chunk.extend_from_slice(value);
        self.records += 1;
        if self.chunk.len() >= CHUNK_TARGET_BYTES {
            self.flush_chunk()?;
        }
        Ok(())
    }

    /// Writes the last chunk and the trailer; returns the sink and what was written.
    pub fn finish(mut self) -> Result<(W, FileSummary)> {
        self.flush_chunk()?;
        self.write(&[TAG_TRAILER])?;
        self.write(&self.records.to_le_bytes())?;
        self.write(&self.payload_bytes.to_le_bytes())?;
        let digest = self.out.hasher.clone().finalize();
        self.write(&digest)?;
        let file_bytes = self.out.written;
        let mut out = self.out.inner;
        out.flush().map_err(|e| StorageError::Io { op: "flush snapshot", path: String::new(), source: e })?;
        let summary =
            FileSummary { records: self.records, payload_bytes: self.payload_bytes, file_bytes, sha256: hex(&digest) };
        Ok((out, summary))
    }

    fn flush_chunk(&mut self) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        let len = u32::try_from(chunk.len()).expect("chunks stay below 64 MiB");
        self.write(&[TAG_CHUNK])?;
        self.write(&len.to_le_bytes())?;
        self.write(&crc32c::crc32c(&chunk).to_le_bytes())?;
        self.write(&chunk)?;
        self.payload_bytes += chunk.len() as u64;
        self.chunk = chunk;
        self.chunk.clear();
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| StorageError::Io { op: "write snapshot", path: String::new(), source: e })
    }
}

/// Reads a snapshot or backup file record by record, checking each chunk before handing out its
/// records and the whole file when the trailer is reached.
pub struct SnapshotReader<R: Read = BufReader<File>> {
    input: HashingReader<R>,
    header: SnapshotHeader,
    chunk: Vec<u8>,
    /// Read position in `chunk`.
    pos: usize,
    chunks: u64,
    records: u64,
    payload_bytes: u64,
    summary: Option<FileSummary>,
}

impl SnapshotReader {
    /// Opens `path` and reads its header. Errors name the file.
    pub fn open(path: &Path) -> Result<SnapshotReader> {
        let file = File::open(path).map_err(StorageError::io("open snapshot", path))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(StorageError::Io {
                op: "open snapshot",
                path: path.display().to_string(),
                source: io::Error::other("is a directory, not a file"),
            });
        }
        SnapshotReader::new(BufReader::with_capacity(1 << 20, file)).map_err(|e| e.at_path("read", path))
    }

    /// Reads the whole file at `path` and returns its header and summary.
    pub fn verify(path: &Path) -> Result<(SnapshotHeader, FileSummary)> {
        SnapshotFile::new(path).verify()
    }
}

impl<R: Read> SnapshotReader<R> {
    /// Reads the magic and the header from `input`.
    pub fn new(input: R) -> Result<SnapshotReader<R>> {
        let mut input = HashingReader::new(input);
        let mut magic = [0u8; 8];
        input.read_exact_at(&mut magic, "magic")?;
        if &magic == MAGIC_V1 {
            return Err(StorageError::corrupt(
                "snapshot",
                "this is a format 1 snapshot (RKVSNAP1), which has no checksums and is not read by this release",
            ));
        }
        if &magic != MAGIC {
            return Err(StorageError::corrupt("snapshot", "not a raftkv snapshot or backup file (bad magic)"));
        }
        let len = input.read_u32("header length")?;
        let crc = input.read_u32("header checksum")?;
        if len >= MAX_HEADER_BYTES {
            return Err(StorageError::corrupt("snapshot", format!("header length {len} is implausible")));
        }
        let mut json = vec![0u8; len as usize];
        input.read_exact_at(&mut json, "header")?;
        if crc32c::crc32c(&json) != crc {
            return Err(StorageError::corrupt("snapshot", "header checksum mismatch at byte 16"));
        }
        let header: SnapshotHeader =
            serde_json::from_slice(&json).map_err(|e| StorageError::corrupt("snapshot header", e))?;
        if !READABLE_FORMAT_VERSIONS.contains(&header.format_version) {
            return Err(StorageError::corrupt(
                "snapshot",
                format!(
                    "file format version {} is not supported (this release reads versions {READABLE_FORMAT_VERSIONS:?} and writes {FILE_FORMAT_VERSION})",
                    header.format_version
                ),
            ));
        }
        Ok(SnapshotReader {
            input,
            header,
            chunk: Vec::new(),
            pos: 0,
            chunks: 0,
            records: 0,
            payload_bytes: 0,
            summary: None,
        })
    }

    /// The file's header.
    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// Once the last record has been read: the file's summary.
    pub fn summary(&self) -> Option<FileSummary> {
        self.summary.clone()
    }

    /// The next record, or `None` after the last one, once the trailer and the SHA-256 have been
    /// checked. A damaged chunk, a wrong trailer, a missing trailer or bytes after it are errors
    /// that say where in the file they are.
    pub fn next_record(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.summary.is_some() {
            return Ok(None);
        }
        if self.pos == self.chunk.len() && !self.next_chunk()? {
            return Ok(None);
        }
        let key = self.field()?;
        let value = self.field()?;
        self.records += 1;
        Ok(Some((key, value)))
    }

    /// The next record decoded: a key with its value and revisions, or state besides the data.
    /// Records of a format 2 file come out as format 3 holds them (see [`crate::state_record`]).
    pub fn next_state_record(&mut self) -> Result<Option<StateRecord>> {
        let (version, revision) = (self.header.format_version, self.header.revision);
        self.next_record()?.map(|(key, value)| StateRecord::decode(version, revision, key, value)).transpose()
    }

    fn field(&mut self) -> Result<Vec<u8>> {
        let bad = |chunks: u64| StorageError::corrupt("snapshot", format!("chunk {chunks} ends inside a record"));
        let len_bytes = self.chunk.get(self.pos..self.pos + 4).ok_or_else(|| bad(self.chunks))?;
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        let field = self.chunk.get(self.pos + 4..self.pos + 4 + len).ok_or_else(|| bad(self.chunks))?.to_vec();
        self.pos += 4 + len;
        Ok(field)
    }

    /// Reads the next chunk into the buffer; at the trailer, checks it and returns false.
    fn next_chunk(&mut self) -> Result<bool> {
        let at = self.input.offset;
        let mut tag = [0u8; 1];
        self.input.read_exact_at(&mut tag, "chunk or trailer (the trailer is missing)")?;
        match tag[0] {
            TAG_CHUNK => {
                let len = self.input.read_u32("chunk length")?;
                let crc = self.input.read_u32("chunk checksum")?;
                if len == 0 || len > MAX_CHUNK_BYTES {
                    return Err(StorageError::corrupt(
                        "snapshot",
                        format!("chunk at byte {at}: implausible length {len}"),
                    ));
                }
                self.chunk.resize(len as usize, 0);
                self.input.read_exact_at(&mut self.chunk, "chunk")?;
                self.chunks += 1;
                if crc32c::crc32c(&self.chunk) != crc {
                    return Err(StorageError::corrupt(
                        "snapshot",
                        format!("chunk {} at byte {at}: checksum mismatch (crc32c)", self.chunks),
                    ));
                }
                self.pos = 0;
                self.payload_bytes += u64::from(len);
                Ok(true)
            }
            TAG_TRAILER => {
                let records = self.input.read_u64("trailer record count")?;
                let payload_bytes = self.input.read_u64("trailer payload size")?;
                let digest = self.input.hasher.clone().finalize();
                let mut stored = [0u8; 32];
                self.input.read_exact_at(&mut stored, "trailer checksum")?;
                if records != self.records || payload_bytes != self.payload_bytes {
                    return Err(StorageError::corrupt(
                        "snapshot",
                        format!(
                            "trailer at byte {at} counts {records} records in {payload_bytes} bytes; the file has {} in {}",
                            self.records, self.payload_bytes
                        ),
                    ));
                }
                if stored[..] != digest[..] {
                    return Err(StorageError::corrupt("snapshot", format!("SHA-256 mismatch (trailer at byte {at})")));
                }
                let mut extra = [0u8; 1];
                if self.input.inner.read(&mut extra).map_err(read_error)? != 0 {
                    return Err(StorageError::corrupt(
                        "snapshot",
                        format!("bytes after the trailer (at byte {})", at + 49),
                    ));
                }
                self.summary =
                    Some(FileSummary { records, payload_bytes, file_bytes: self.input.offset, sha256: hex(&stored) });
                Ok(false)
            }
            other => Err(StorageError::corrupt(
                "snapshot",
                format!("byte {at}: expected a chunk or the trailer, found tag {other:#04x}"),
            )),
        }
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot_header::FileKind;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            format_version: FILE_FORMAT_VERSION,
            kind: FileKind::Snapshot,
            consistency: None,
            identity: None,
            revision: 7,
            clock_ms: 0,
            last_log_id: None,
            membership: Default::default(),
            recovery: None,
            cluster: Default::default(),
            source_node: Some(1),
            created_at: SnapshotHeader::now_rfc3339(),
            raftkv_version: "test".into(),
        }
    }

    fn write(dir: &Path, records: &[(&[u8], &[u8])]) -> (PathBuf, FileSummary) {
        let path = dir.join("s");
        let mut w = SnapshotWriter::create(&path, &header()).unwrap();
        for (k, v) in records {
            w.push(k, v).unwrap();
        }
        let (_, summary) = w.finish_file(&path).unwrap();
        (path, summary)
    }

    #[test]
    fn writes_and_reads_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (path, summary) = write(dir.path(), &[(b"a", b"1"), (b"b", b"")]);
        let mut r = SnapshotReader::open(&path).unwrap();
        assert_eq!(r.header(), &header_with_time(&r));
        assert_eq!(r.next_record().unwrap(), Some((b"a".to_vec(), b"1".to_vec())));
        assert_eq!(r.next_record().unwrap(), Some((b"b".to_vec(), vec![])));
        assert_eq!(r.next_record().unwrap(), None);
        assert_eq!(r.summary(), Some(summary.clone()));
        assert_eq!(summary.records, 2);
        assert_eq!(summary.file_bytes, std::fs::metadata(&path).unwrap().len());
    }

    fn header_with_time(r: &SnapshotReader) -> SnapshotHeader {
        SnapshotHeader { created_at: r.header().created_at.clone(), ..header() }
    }

    #[test]
    fn many_chunks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let value = vec![7u8; 100_000];
        let keys: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let records: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (k.as_slice(), value.as_slice())).collect();
        let (path, summary) = write(dir.path(), &records);
        assert_eq!(summary.records, 50);
        let (_, verified) = SnapshotFile::new(&path).verify().unwrap();
        assert_eq!(verified, summary);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write(dir.path(), &[(b"key", b"value"), (b"other", b"thing")]);
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert!(SnapshotFile::new(&path).verify().is_err(), "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn truncation_and_a_missing_trailer_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write(dir.path(), &[(b"key", b"value")]);
        let good = std::fs::read(&path).unwrap();
        for cut in [good.len() - 1, good.len() - 49, 20, 3] {
            std::fs::write(&path, &good[..cut]).unwrap();
            let err = SnapshotFile::new(&path).verify().unwrap_err();
            assert!(matches!(err, StorageError::Truncated { .. }), "cut at {cut}: {err}");
        }
        let mut extra = good.clone();
        extra.push(0);
        std::fs::write(&path, &extra).unwrap();
        assert!(SnapshotFile::new(&path).verify().unwrap_err().to_string().contains("after the trailer"));
        std::fs::write(&path, b"RKVSNAP1garbage").unwrap();
        assert!(SnapshotFile::new(&path).verify().unwrap_err().to_string().contains("format 1"));
    }
}
