//! What the filesystem holds: the durable state on the backing directory and the volatile state
//! (unsynced file data, unsynced directory entries) in memory.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::control::PowerCut;
use crate::volatile_file::VolatileFile;

/// The root directory's inode number (FUSE's).
pub(crate) const ROOT: u64 = 1;

/// Names the filesystem uses in the backing directories while it links a file into place; hidden,
/// and removed when found (they are what an interrupted directory sync leaves).
const TEMP_PREFIX: &str = ".faultfs-link-";

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A regular file: its volatile contents and attributes, and how many names it has.
pub(crate) struct FileNode {
    pub(crate) data: VolatileFile,
    /// The file's link in the homes directory: it keeps the data of a file that has no durable
    /// name yet, and is how a directory sync links the file in.
    home: PathBuf,
    /// `(st_dev, st_ino)` of the backing file, to recognise its other durable names.
    backing_id: (u64, u64),
    /// Volatile names.
    pub(crate) nlink: u32,
    /// Open handles.
    open: u32,
    pub(crate) perm: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
}

/// A directory. Directories themselves are created, removed and renamed on the backing directory
/// at once (they are durable immediately); the names of the files in them are volatile until the
/// directory is fsynced.
pub(crate) struct DirNode {
    /// Path relative to the data root.
    pub(crate) path: PathBuf,
    /// The volatile entries, read from the backing directory on first use.
    entries: Option<BTreeMap<OsString, u64>>,
}

/// A file or a directory.
pub(crate) enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// The whole filesystem state behind one lock.
pub(crate) struct DiskState {
    /// The mirror of the durable namespace.
    data_root: PathBuf,
    /// One link per live file, named by inode number.
    homes: PathBuf,
    /// Inode numbers are never reused, so that what the kernel still remembers from before a power
    /// cut cannot name a different file after it.
    next_ino: u64,
    next_fh: u64,
    pub(crate) nodes: HashMap<u64, Node>,
    handles: HashMap<u64, u64>,
    by_backing: HashMap<(u64, u64), u64>,
}

impl DiskState {
    /// The state of a filesystem over `backing`: its durable files in `backing/data`, and
    /// `backing/inodes` for its own bookkeeping (emptied: what it held was never durable).
    pub(crate) fn open(backing: &Path) -> io::Result<DiskState> {
        let data_root = backing.join("data");
        let homes = backing.join("inodes");
        fs::create_dir_all(&data_root)?;
        if homes.exists() {
            fs::remove_dir_all(&homes)?;
        }
        fs::create_dir_all(&homes)?;
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode { path: PathBuf::new(), entries: None }));
        Ok(DiskState {
            data_root,
            homes,
            next_ino: ROOT + 1,
            next_fh: 1,
            nodes,
            handles: HashMap::new(),
            by_backing: HashMap::new(),
        })
    }

    fn dir(&self, ino: u64) -> io::Result<&DirNode> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(errno(libc::ENOTDIR)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> io::Result<&mut DirNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(errno(libc::ENOTDIR)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    /// The file `ino`.
    pub(crate) fn file_mut(&mut self, ino: u64) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            Some(Node::Dir(_)) => Err(errno(libc::EISDIR)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    /// The backing path of directory `ino`.
    pub(crate) fn dir_path(&self, ino: u64) -> io::Result<PathBuf> {
        Ok(self.data_root.join(&self.dir(ino)?.path))
    }

    /// The volatile entries of directory `ino`, reading them from the backing directory first if
    /// needed.
    pub(crate) fn entries(&mut self, ino: u64) -> io::Result<&BTreeMap<OsString, u64>> {
        self.load(ino)?;
        Ok(self.dir(ino)?.entries.as_ref().expect("loaded above"))
    }

    fn entries_mut(&mut self, ino: u64) -> io::Result<&mut BTreeMap<OsString, u64>> {
        self.load(ino)?;
        Ok(self.dir_mut(ino)?.entries.as_mut().expect("loaded above"))
    }

    fn load(&mut self, ino: u64) -> io::Result<()> {
        if self.dir(ino)?.entries.is_some() {
            return Ok(());
        }
        let rel = self.dir(ino)?.path.clone();
        let dir = self.data_root.join(&rel);
        let mut entries = BTreeMap::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let path = entry.path();
            if name.to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(&path);
                continue;
            }
            let meta = fs::symlink_metadata(&path)?;
            let child = if meta.is_dir() {
                let child = self.new_ino();
                self.nodes.insert(child, Node::Dir(DirNode { path: rel.join(&name), entries: None }));
                child
            } else if meta.is_file() {
                self.load_file(&path, &meta)?
            } else {
                continue; // symlinks and special files are not part of this filesystem
            };
            entries.insert(name, child);
        }
        self.dir_mut(ino)?.entries = Some(entries);
        Ok(())
    }

    /// The inode for the durable file at `path`: a new one, or the one already loaded through
    /// another of its names.
    fn load_file(&mut self, path: &Path, meta: &fs::Metadata) -> io::Result<u64> {
        let id = (meta.dev(), meta.ino());
        if let Some(&ino) = self.by_backing.get(&id)
            && let Some(Node::File(f)) = self.nodes.get_mut(&ino)
        {
            f.nlink += 1;
            return Ok(ino);
        }
        let ino = self.new_ino();
        let home = self.homes.join(ino.to_string());
        fs::hard_link(path, &home)?;
        let file = OpenOptions::new().read(true).write(true).open(&home)?;
        let time = |t: io::Result<SystemTime>| t.unwrap_or(SystemTime::UNIX_EPOCH);
        let (perm, owner) = ((meta.mode() & 0o7777) as u16, (meta.uid(), meta.gid()));
        self.add_file(
            ino,
            home,
            file,
            perm,
            owner,
            [time(meta.accessed()), time(meta.modified()), time(meta.modified())],
        )?;
        Ok(ino)
    }

    /// Registers file `ino`, whose data is `file` (opened at its `home` link), with one name, no
    /// open handle, and the given permissions, `(uid, gid)` and `[atime, mtime, ctime]`.
    fn add_file(
        &mut self,
        ino: u64,
        home: PathBuf,
        file: File,
        perm: u16,
        (uid, gid): (u32, u32),
        [atime, mtime, ctime]: [SystemTime; 3],
    ) -> io::Result<()> {
        let meta = file.metadata()?;
        let backing_id = (meta.dev(), meta.ino());
        let data = VolatileFile::open(file)?;
        let node = FileNode { data, home, backing_id, nlink: 1, open: 0, perm, uid, gid, atime, mtime, ctime };
        self.nodes.insert(ino, Node::File(node));
        self.by_backing.insert(backing_id, ino);
        Ok(())
    }

    fn new_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// The entry `name` in directory `parent`.
    pub(crate) fn lookup(&mut self, parent: u64, name: &OsStr) -> io::Result<u64> {
        self.entries(parent)?.get(name).copied().ok_or_else(|| errno(libc::ENOENT))
    }

    fn check_free(&mut self, parent: u64, name: &OsStr) -> io::Result<()> {
        if self.entries(parent)?.contains_key(name) { Err(errno(libc::EEXIST)) } else { Ok(()) }
    }

    /// Creates an empty file `name` in `parent`. Its name is volatile until `parent` is synced.
    pub(crate) fn create_file(&mut self, parent: u64, name: &OsStr, mode: u32, uid: u32, gid: u32) -> io::Result<u64> {
        self.check_free(parent, name)?;
        let ino = self.new_ino();
        let home = self.homes.join(ino.to_string());
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(mode & 0o7777).open(&home)?;
        let now = SystemTime::now();
        self.add_file(ino, home, file, (mode & 0o7777) as u16, (uid, gid), [now; 3])?;
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Creates directory `name` in `parent`, durably at once.
    pub(crate) fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> io::Result<u64> {
        self.check_free(parent, name)?;
        let rel = self.dir(parent)?.path.join(name);
        let path = self.data_root.join(&rel);
        // A file of that name may still be durable (its removal not yet synced): a filesystem may
        // make a removal durable early, never late.
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(&path)?;
        }
        fs::create_dir(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
        let ino = self.new_ino();
        self.nodes.insert(ino, Node::Dir(DirNode { path: rel, entries: Some(BTreeMap::new()) }));
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Gives file `ino` the extra name `name` in `parent` (volatile until `parent` is synced).
    pub(crate) fn link(&mut self, ino: u64, parent: u64, name: &OsStr) -> io::Result<()> {
        self.file_mut(ino)?;
        self.check_free(parent, name)?;
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        let file = self.file_mut(ino)?;
        file.nlink += 1;
        file.ctime = SystemTime::now();
        Ok(())
    }

    /// Removes file `name` from `parent` (volatile until `parent` is synced).
    pub(crate) fn unlink(&mut self, parent: u64, name: &OsStr) -> io::Result<()> {
        let ino = self.lookup(parent, name)?;
        if matches!(self.nodes.get(&ino), Some(Node::Dir(_))) {
            return Err(errno(libc::EISDIR));
        }
        self.entries_mut(parent)?.remove(name);
        self.drop_name(ino);
        Ok(())
    }

    fn drop_name(&mut self, ino: u64) {
        if let Ok(file) = self.file_mut(ino) {
            file.nlink = file.nlink.saturating_sub(1);
            file.ctime = SystemTime::now();
        }
        self.forget_if_gone(ino);
    }

    /// Drops a file that has neither names nor open handles.
    fn forget_if_gone(&mut self, ino: u64) {
        if let Some(Node::File(f)) = self.nodes.get(&ino)
            && f.nlink == 0
            && f.open == 0
        {
            let _ = fs::remove_file(&f.home);
            self.by_backing.remove(&f.backing_id);
            self.nodes.remove(&ino);
        }
    }

    /// Removes the empty directory `name` from `parent`, durably at once.
    pub(crate) fn rmdir(&mut self, parent: u64, name: &OsStr) -> io::Result<()> {
        let ino = self.lookup(parent, name)?;
        self.dir(ino)?;
        if !self.entries(ino)?.is_empty() {
            return Err(errno(libc::ENOTEMPTY));
        }
        let path = self.dir_path(ino)?;
        remove_stale_files(&path)?;
        fs::remove_dir(&path)?;
        self.entries_mut(parent)?.remove(name);
        self.nodes.remove(&ino);
        Ok(())
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`, replacing a file (or an empty
    /// directory, for a directory) of that name. A file's rename is volatile until both
    /// directories are synced; a directory's is durable at once.
    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> io::Result<()> {
        let ino = self.lookup(parent, name)?;
        let target = self.entries(new_parent)?.get(new_name).copied();
        if target == Some(ino) {
            return Ok(());
        }
        if target.is_some() && no_replace {
            return Err(errno(libc::EEXIST));
        }
        let is_dir = matches!(self.nodes.get(&ino), Some(Node::Dir(_)));
        match (is_dir, target.map(|t| matches!(self.nodes.get(&t), Some(Node::Dir(_))))) {
            (true, Some(false)) => return Err(errno(libc::ENOTDIR)),
            (false, Some(true)) => return Err(errno(libc::EISDIR)),
            _ => {}
        }
        if is_dir {
            if let Some(t) = target
                && !self.entries(t)?.is_empty()
            {
                return Err(errno(libc::ENOTEMPTY));
            }
            let from_rel = self.dir(ino)?.path.clone();
            let to_rel = self.dir(new_parent)?.path.join(new_name);
            if to_rel.starts_with(&from_rel) {
                return Err(errno(libc::EINVAL));
            }
            let to = self.data_root.join(&to_rel);
            if let Some(t) = target {
                remove_stale_files(&to)?;
                self.nodes.remove(&t);
            } else if fs::symlink_metadata(&to).is_ok_and(|m| !m.is_dir()) {
                fs::remove_file(&to)?; // a removed file's name, not yet synced away
            }
            fs::rename(self.data_root.join(&from_rel), &to)?;
            for node in self.nodes.values_mut() {
                if let Node::Dir(d) = node
                    && let Ok(rest) = d.path.strip_prefix(&from_rel)
                {
                    d.path = to_rel.join(rest);
                }
            }
            self.entries_mut(parent)?.remove(name);
            self.entries_mut(new_parent)?.insert(new_name.to_owned(), ino);
        } else {
            self.entries_mut(parent)?.remove(name);
            self.entries_mut(new_parent)?.insert(new_name.to_owned(), ino);
            if let Some(t) = target {
                self.drop_name(t);
            }
            if let Ok(file) = self.file_mut(ino) {
                file.ctime = SystemTime::now();
            }
        }
        Ok(())
    }

    /// Opens file `ino`, returning a handle.
    pub(crate) fn open_file(&mut self, ino: u64) -> io::Result<u64> {
        self.file_mut(ino)?.open += 1;
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, ino);
        Ok(fh)
    }

    /// Closes handle `fh`.
    pub(crate) fn release(&mut self, fh: u64) {
        if let Some(ino) = self.handles.remove(&fh) {
            if let Ok(file) = self.file_mut(ino) {
                file.open = file.open.saturating_sub(1);
            }
            self.forget_if_gone(ino);
        }
    }

    /// Makes the file's data durable.
    pub(crate) fn sync_file(&mut self, ino: u64, data_only: bool) -> io::Result<()> {
        self.file_mut(ino)?.data.sync(data_only)
    }

    /// Makes the names in directory `ino` durable: the backing directory is made to hold exactly
    /// the volatile file entries, then fsynced.
    pub(crate) fn sync_dir(&mut self, ino: u64) -> io::Result<()> {
        let Some(entries) = self.dir(ino)?.entries.clone() else {
            return Ok(()); // never read: nothing changed
        };
        let dir = self.dir_path(ino)?;
        let mut durable: HashMap<OsString, (u64, u64)> = HashMap::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = fs::symlink_metadata(entry.path())?;
            if meta.is_file() {
                durable.insert(entry.file_name(), (meta.dev(), meta.ino()));
            }
        }
        for (name, child) in &entries {
            let Some(Node::File(f)) = self.nodes.get(child) else { continue };
            if durable.remove(name) == Some(f.backing_id) {
                continue;
            }
            // Link under a temporary name, then rename over the old name: the name is never
            // missing from the backing directory.
            let temp = dir.join(format!("{TEMP_PREFIX}{child}"));
            let _ = fs::remove_file(&temp);
            fs::hard_link(&f.home, &temp)?;
            fs::rename(&temp, dir.join(name))?;
        }
        for name in durable.keys() {
            fs::remove_file(dir.join(name))?;
        }
        File::open(&dir)?.sync_all()
    }

    /// Cuts the power: every unsynced write and every unsynced name is lost. Inodes and handles
    /// from before are forgotten; the namespace is read again from the backing directory.
    pub(crate) fn power_cut(&mut self) -> io::Result<PowerCut> {
        let mut cut = PowerCut::default();
        for node in self.nodes.values() {
            if let Node::File(f) = node
                && f.data.is_dirty()
            {
                cut.files_with_unsynced_data += 1;
                cut.unsynced_bytes += f.data.unsynced_bytes();
            }
        }
        self.nodes.clear();
        self.nodes.insert(ROOT, Node::Dir(DirNode { path: PathBuf::new(), entries: None }));
        self.handles.clear();
        self.by_backing.clear();
        fs::remove_dir_all(&self.homes)?;
        fs::create_dir_all(&self.homes)?;
        Ok(cut)
    }
}

/// Removes the files left in a backing directory whose removal was not yet synced (the directory
/// is being removed or replaced: the removals become durable first).
fn remove_stale_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
