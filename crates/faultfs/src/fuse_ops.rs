//! The FUSE operations: each one locks the state, does its work there and answers.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::control::{FaultControl, Shared};
use crate::disk_state::{DiskState, Node};

/// Nothing is cached by the kernel: after a power cut, what it remembered is stale.
const TTL: Duration = Duration::ZERO;

/// The FUSE side of the filesystem.
pub(crate) struct LazyFs {
    state: Arc<Mutex<DiskState>>,
    shared: Arc<Shared>,
}

impl LazyFs {
    pub(crate) fn new(control: &FaultControl) -> LazyFs {
        LazyFs { state: control.state.clone(), shared: control.shared.clone() }
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // A panic in one operation must not take the filesystem down with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn control(&self) -> FaultControl {
        FaultControl { state: self.state.clone(), shared: self.shared.clone() }
    }

    /// Answers a sync after the configured delay, from another thread so that the other
    /// operations go on meanwhile.
    fn answer_sync(&self, result: io::Result<()>, reply: ReplyEmpty) {
        let delay = self.control().fsync_delay();
        let answer = move || match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(Errno::from(e)),
        };
        if delay.is_zero() {
            answer();
        } else {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                answer();
            });
        }
    }
}

fn attr(state: &DiskState, ino: u64) -> io::Result<FileAttr> {
    match state.nodes.get(&ino) {
        Some(Node::File(f)) => {
            let size = f.data.size();
            Ok(FileAttr {
                ino: INodeNo(ino),
                size,
                blocks: size.div_ceil(512),
                atime: f.atime,
                mtime: f.mtime,
                ctime: f.ctime,
                crtime: f.ctime,
                kind: FileType::RegularFile,
                perm: f.perm,
                nlink: f.nlink,
                uid: f.uid,
                gid: f.gid,
                rdev: 0,
                blksize: 4096,
                flags: 0,
            })
        }
        Some(Node::Dir(_)) => {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(state.dir_path(ino)?)?;
            let time = |t: io::Result<SystemTime>| t.unwrap_or(SystemTime::UNIX_EPOCH);
            Ok(FileAttr {
                ino: INodeNo(ino),
                size: 4096,
                blocks: 8,
                atime: time(meta.accessed()),
                mtime: time(meta.modified()),
                ctime: time(meta.modified()),
                crtime: time(meta.modified()),
                kind: FileType::Directory,
                perm: (meta.mode() & 0o7777) as u16,
                nlink: 2,
                uid: meta.uid(),
                gid: meta.gid(),
                rdev: 0,
                blksize: 4096,
                flags: 0,
            })
        }
        None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
    }
}

fn entry_reply(result: io::Result<FileAttr>, reply: ReplyEntry) {
    match result {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(Errno::from(e)),
    }
}

fn attr_reply(result: io::Result<FileAttr>, reply: ReplyAttr) {
    match result {
        Ok(a) => reply.attr(&TTL, &a),
        Err(e) => reply.error(Errno::from(e)),
    }
}

fn empty_reply(result: io::Result<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(Errno::from(e)),
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.lock();
        let result = state.lookup(parent.0, name).and_then(|ino| attr(&state, ino));
        entry_reply(result, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        attr_reply(attr(&self.lock(), ino.0), reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.lock();
        let when = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => SystemTime::now(),
        };
        let result = (|| {
            match state.nodes.get(&ino.0) {
                Some(Node::Dir(_)) => {
                    if size.is_some() {
                        return Err(io::Error::from_raw_os_error(libc::EISDIR));
                    }
                    if let Some(mode) = mode {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(
                            state.dir_path(ino.0)?,
                            std::fs::Permissions::from_mode(mode & 0o7777),
                        )?;
                    }
                }
                Some(Node::File(_)) => {
                    let file = state.file_mut(ino.0)?;
                    if let Some(size) = size {
                        file.data.set_size(size);
                        file.mtime = SystemTime::now();
                    }
                    if let Some(mode) = mode {
                        file.perm = (mode & 0o7777) as u16;
                    }
                    if let Some(uid) = uid {
                        file.uid = uid;
                    }
                    if let Some(gid) = gid {
                        file.gid = gid;
                    }
                    if let Some(t) = atime {
                        file.atime = when(t);
                    }
                    if let Some(t) = mtime {
                        file.mtime = when(t);
                    }
                    file.ctime = SystemTime::now();
                }
                None => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            }
            attr(&state, ino.0)
        })();
        attr_reply(result, reply);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let mut state = self.lock();
        let result =
            state.create_file(parent.0, name, mode & !umask, req.uid(), req.gid()).and_then(|ino| attr(&state, ino));
        entry_reply(result, reply);
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut state = self.lock();
        let result = state.mkdir(parent.0, name, mode & !umask).and_then(|ino| attr(&state, ino));
        entry_reply(result, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty_reply(self.lock().unlink(parent.0, name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty_reply(self.lock().rmdir(parent.0, name), reply);
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        empty_reply(self.lock().rename(parent.0, name, newparent.0, newname, no_replace), reply);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let mut state = self.lock();
        let result = state.link(ino.0, newparent.0, newname).and_then(|()| attr(&state, ino.0));
        entry_reply(result, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().open_file(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.lock();
        match state.file_mut(ino.0).and_then(|f| f.data.read(offset, size as usize)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.lock();
        let result = state.file_mut(ino.0).and_then(|f| {
            f.data.write(offset, data)?;
            f.mtime = SystemTime::now();
            Ok(())
        });
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let result = self.lock().sync_file(ino.0, datasync);
        self.shared.file_syncs.fetch_add(1, Ordering::Relaxed);
        self.answer_sync(result, reply);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut state = self.lock();
        let listing: io::Result<Vec<(u64, FileType, std::ffi::OsString)>> = (|| {
            let entries = state.entries(ino.0)?.clone();
            let mut list = vec![(ino.0, FileType::Directory, ".".into()), (ino.0, FileType::Directory, "..".into())];
            for (name, child) in entries {
                let kind = match state.nodes.get(&child) {
                    Some(Node::Dir(_)) => FileType::Directory,
                    _ => FileType::RegularFile,
                };
                list.push((child, kind, name));
            }
            Ok(list)
        })();
        match listing {
            Ok(list) => {
                for (i, (child, kind, name)) in list.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let result = self.lock().sync_dir(ino.0);
        self.shared.dir_syncs.fetch_add(1, Ordering::Relaxed);
        self.answer_sync(result, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let root = self.lock().dir_path(crate::disk_state::ROOT);
        match root
            .map_err(Errno::from)
            .and_then(|root| nix::sys::statvfs::statvfs(&root).map_err(|e| Errno::from_i32(e as i32)))
        {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.lock();
        let result = state.create_file(parent.0, name, mode & !umask, req.uid(), req.gid()).and_then(|ino| {
            let fh = state.open_file(ino)?;
            Ok((attr(&state, ino)?, fh))
        });
        match result {
            Ok((a, fh)) => reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        let result = state.file_mut(ino.0).and_then(|f| match mode {
            // Reserving space changes nothing a process can see.
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            0 => {
                let end = offset.saturating_add(length);
                if end > f.data.size() {
                    f.data.set_size(end);
                }
                Ok(())
            }
            _ => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
        });
        empty_reply(result, reply);
    }
}
