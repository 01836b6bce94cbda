//! One regular file's contents as a process sees them: the synced bytes on the backing file with
//! the unsynced writes laid over them in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Granularity of the in-memory overlay.
pub(crate) const PAGE: u64 = 4096;

/// A file whose writes stay in memory until [`VolatileFile::sync`].
///
/// The backing file holds exactly what was synced: nothing reaches it before an fsync, so
/// dropping a `VolatileFile` without syncing loses every write since the last sync, as a power cut
/// would. Reads see the volatile contents: the dirty pages where they exist, the backing file below
/// [`keep_below`](Self) and zeros elsewhere up to the volatile size.
pub(crate) struct VolatileFile {
    backing: File,
    /// The size a process sees.
    size: u64,
    /// Bytes of the backing file that are still the file's contents: the smallest size the file
    /// had since the last sync (a truncation hides what lay beyond it, even if the file grows
    /// again).
    keep_below: u64,
    /// The backing file's length: the size at the last sync.
    synced_size: u64,
    /// Unsynced pages by page number, each a whole page (zeros beyond the size).
    dirty: BTreeMap<u64, Box<[u8]>>,
}

impl VolatileFile {
    /// The file backed by `backing`, whose current contents are its synced contents.
    pub(crate) fn open(backing: File) -> io::Result<VolatileFile> {
        let len = backing.metadata()?.len();
        Ok(VolatileFile { backing, size: len, keep_below: len, synced_size: len, dirty: BTreeMap::new() })
    }

    /// The size a process sees.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Bytes written since the last sync that a power cut would lose (whole pages).
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        self.dirty.len() as u64 * PAGE
    }

    /// Whether anything (data or size) changed since the last sync.
    pub(crate) fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.keep_below != self.size || self.synced_size != self.size
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub(crate) fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = (offset.saturating_add(len as u64)).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let mut pos = offset;
        while pos < end {
            let page = pos / PAGE;
            let page_end = ((page + 1) * PAGE).min(end);
            let chunk = &mut out[(pos - offset) as usize..(page_end - offset) as usize];
            match self.dirty.get(&page) {
                Some(data) => {
                    let from = (pos - page * PAGE) as usize;
                    chunk.copy_from_slice(&data[from..from + chunk.len()]);
                }
                None => self.read_backing(pos, chunk)?,
            }
            pos = page_end;
        }
        Ok(out)
    }

    /// Fills `buf` from the backing file at `pos`, with zeros where the backing bytes are not the
    /// file's (beyond `keep_below`).
    fn read_backing(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        buf.fill(0);
        if pos >= self.keep_below {
            return Ok(());
        }
        let want = ((self.keep_below - pos) as usize).min(buf.len());
        let mut done = 0;
        while done < want {
            let n = self.backing.read_at(&mut buf[done..want], pos + done as u64)?;
            if n == 0 {
                break; // the backing file is shorter: the rest reads as zeros
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `offset`, in memory only.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let page = pos / PAGE;
            let page_end = ((page + 1) * PAGE).min(end);
            let from = (pos - page * PAGE) as usize;
            let slice = &data[(pos - offset) as usize..(page_end - offset) as usize];
            self.page_mut(page)?[from..from + slice.len()].copy_from_slice(slice);
            pos = page_end;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// The dirty copy of `page`, made from the current contents on first write.
    fn page_mut(&mut self, page: u64) -> io::Result<&mut [u8]> {
        if !self.dirty.contains_key(&page) {
            let mut buf = vec![0u8; PAGE as usize].into_boxed_slice();
            let start = page * PAGE;
            if start < self.size {
                let valid = ((self.size - start).min(PAGE)) as usize;
                self.read_backing(start, &mut buf[..valid])?;
            }
            self.dirty.insert(page, buf);
        }
        Ok(self.dirty.get_mut(&page).expect("inserted above"))
    }

    /// Changes the size, in memory only: bytes beyond a smaller size are gone, and read as zeros
    /// if the file grows again.
    pub(crate) fn set_size(&mut self, size: u64) {
        if size < self.size {
            self.keep_below = self.keep_below.min(size);
            let first_gone = size.div_ceil(PAGE);
            self.dirty.split_off(&first_gone);
            if !size.is_multiple_of(PAGE)
                && let Some(data) = self.dirty.get_mut(&(size / PAGE))
            {
                data[(size % PAGE) as usize..].fill(0);
            }
        }
        self.size = size;
    }

    /// Writes the volatile contents to the backing file and fsyncs it (`fdatasync` if
    /// `data_only`). Afterwards the backing file holds exactly what a process sees.
    ///
    /// On an error the overlay is kept, so that a later sync can try again.
    pub(crate) fn sync(&mut self, data_only: bool) -> io::Result<()> {
        // Cut the backing file to what is still valid first, so that bytes a truncation hid do not
        // come back when it is extended to the new size.
        let valid = self.keep_below.min(self.size);
        if self.synced_size != valid || valid != self.size {
            self.backing.set_len(valid)?;
            self.backing.set_len(self.size)?;
        }
        for (page, data) in &self.dirty {
            let start = page * PAGE;
            let len = (self.size - start).min(PAGE) as usize;
            self.backing.write_all_at(&data[..len], start)?;
        }
        if data_only {
            self.backing.sync_data()?
        } else {
            self.backing.sync_all()?
        }
        self.dirty.clear();
        self.keep_below = self.size;
        self.synced_size = self.size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, VolatileFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        (dir, path.clone(), VolatileFile::open(file).unwrap())
    }

    #[test]
    fn writes_are_visible_but_reach_the_backing_file_only_on_sync() {
        let (_dir, path, mut f) = file_with(b"hello world");
        f.write(6, b"there, friend").unwrap();
        assert_eq!(f.read(0, 100).unwrap(), b"hello there, friend");
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        assert!(f.is_dirty());
        f.sync(true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello there, friend");
        assert!(!f.is_dirty());
    }

    #[test]
    fn writes_spanning_pages_and_gaps_read_back() {
        let (_dir, path, mut f) = file_with(b"");
        let big: Vec<u8> = (0..3 * PAGE + 17).map(|i| (i % 251) as u8).collect();
        f.write(10, &big).unwrap();
        let mut expected = vec![0u8; 10];
        expected.extend_from_slice(&big);
        assert_eq!(f.read(0, expected.len() + 5).unwrap(), expected);
        f.write(5 * PAGE, b"far").unwrap();
        assert_eq!(f.size(), 5 * PAGE + 3);
        assert_eq!(f.read(4 * PAGE, 10).unwrap(), vec![0u8; 10]);
        f.sync(false).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[..expected.len()], &expected[..]);
        assert_eq!(&on_disk[5 * PAGE as usize..], b"far");
    }

    #[test]
    fn truncation_hides_the_old_bytes_even_when_the_file_grows_again() {
        let (_dir, path, mut f) = file_with(&[7u8; 100]);
        f.set_size(10);
        f.set_size(50);
        assert_eq!(f.read(0, 100).unwrap(), [vec![7u8; 10], vec![0u8; 40]].concat());
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 100], "unsynced truncation");
        f.sync(true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [vec![7u8; 10], vec![0u8; 40]].concat());
    }

    #[test]
    fn a_truncation_inside_a_dirty_page_zeroes_its_tail() {
        let (_dir, _path, mut f) = file_with(b"");
        f.write(0, &[1u8; 100]).unwrap();
        f.set_size(20);
        f.write(60, b"x").unwrap();
        let read = f.read(0, 100).unwrap();
        assert_eq!(read.len(), 61);
        assert_eq!(&read[..20], &[1u8; 20]);
        assert!(read[20..60].iter().all(|b| *b == 0));
    }

    #[test]
    fn dropping_without_sync_loses_the_writes() {
        let (_dir, path, mut f) = file_with(b"synced");
        f.write(6, b" and not").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"synced");
    }
}
