//! The filesystem's promises on a real FUSE mount: what was synced survives a power cut, what was
//! not vanishes, and names follow their directory's sync. Needs root; without it the tests skip,
//! except under `CI`, where they fail.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use raftkv_faultfs::FaultFs;

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test} needs root (FUSE mounts), and CI must run it");
    eprintln!("skipping {test}: needs root for FUSE mounts");
    false
}

struct Mounted {
    fs: FaultFs,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn new() -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let fs = FaultFs::mount(&dir.path().join("backing"), &mnt).unwrap();
        Mounted { fs, _dir: dir }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.fs.mountpoint().join(rel)
    }

    fn cut(&self) {
        self.fs.control().power_cut().unwrap();
    }
}

fn read(path: &Path) -> Option<String> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    Some(s)
}

fn write_synced(path: &Path, data: &str) {
    let mut f = File::create(path).unwrap();
    f.write_all(data.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn written_and_synced_survives_and_unsynced_writes_vanish() {
    if !root_or_skip("written_and_synced_survives_and_unsynced_writes_vanish") {
        return;
    }
    let m = Mounted::new();
    let path = m.path("wal");
    write_synced(&path, "synced;");
    sync_dir(m.fs.mountpoint());
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"not synced").unwrap();
    drop(f);
    assert_eq!(read(&path).as_deref(), Some("synced;not synced"), "the page cache serves unsynced data");
    let cut = m.fs.control().power_cut().unwrap();
    assert_eq!(cut.files_with_unsynced_data, 1, "{cut}");
    assert_eq!(read(&path).as_deref(), Some("synced;"));

    // fdatasync is a sync too.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"data-synced").unwrap();
    f.sync_data().unwrap();
    drop(f);
    m.cut();
    assert_eq!(read(&path).as_deref(), Some("synced;data-synced"));
}

#[test]
fn a_new_file_needs_its_directory_synced_to_survive() {
    if !root_or_skip("a_new_file_needs_its_directory_synced_to_survive") {
        return;
    }
    let m = Mounted::new();
    fs::create_dir(m.path("db")).unwrap();
    write_synced(&m.path("db/orphan"), "data synced, name not");
    m.cut();
    assert_eq!(read(&m.path("db/orphan")), None, "the name was never synced");
    assert!(m.path("db").is_dir(), "directories are durable at once");

    write_synced(&m.path("db/kept"), "both synced");
    sync_dir(&m.path("db"));
    m.cut();
    assert_eq!(read(&m.path("db/kept")).as_deref(), Some("both synced"));
    let names: Vec<_> = fs::read_dir(m.path("db")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["kept"]);
}

#[test]
fn renames_follow_the_directory_sync() {
    if !root_or_skip("renames_follow_the_directory_sync") {
        return;
    }
    let m = Mounted::new();
    let (current, temp) = (m.path("CURRENT"), m.path("CURRENT.tmp"));
    write_synced(&current, "MANIFEST-1");
    sync_dir(m.fs.mountpoint());

    // The classic atomic replace, without the directory fsync: the old contents come back.
    write_synced(&temp, "MANIFEST-2");
    fs::rename(&temp, &current).unwrap();
    assert_eq!(read(&current).as_deref(), Some("MANIFEST-2"));
    m.cut();
    assert_eq!(read(&current).as_deref(), Some("MANIFEST-1"));
    assert_eq!(read(&temp), None, "the temporary file's name was never synced either");

    // With it, the new contents stay.
    write_synced(&temp, "MANIFEST-3");
    fs::rename(&temp, &current).unwrap();
    sync_dir(m.fs.mountpoint());
    m.cut();
    assert_eq!(read(&current).as_deref(), Some("MANIFEST-3"));
    assert_eq!(read(&temp), None);
}

#[test]
fn unsynced_removals_and_truncations_are_undone() {
    if !root_or_skip("unsynced_removals_and_truncations_are_undone") {
        return;
    }
    let m = Mounted::new();
    write_synced(&m.path("a"), "0123456789");
    write_synced(&m.path("b"), "bbb");
    sync_dir(m.fs.mountpoint());

    fs::remove_file(m.path("b")).unwrap();
    OpenOptions::new().write(true).open(m.path("a")).unwrap().set_len(3).unwrap();
    assert_eq!(read(&m.path("a")).as_deref(), Some("012"));
    m.cut();
    assert_eq!(read(&m.path("b")).as_deref(), Some("bbb"), "the removal was not synced");
    assert_eq!(read(&m.path("a")).as_deref(), Some("0123456789"), "the truncation was not synced");

    fs::remove_file(m.path("b")).unwrap();
    sync_dir(m.fs.mountpoint());
    let f = OpenOptions::new().write(true).open(m.path("a")).unwrap();
    f.set_len(3).unwrap();
    f.sync_all().unwrap();
    m.cut();
    assert_eq!(read(&m.path("b")), None);
    assert_eq!(read(&m.path("a")).as_deref(), Some("012"));
}

#[test]
fn hard_links_and_large_files_survive_when_synced() {
    if !root_or_skip("hard_links_and_large_files_survive_when_synced") {
        return;
    }
    let m = Mounted::new();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut f = File::create(m.path("sst")).unwrap();
    f.write_all(&big).unwrap();
    f.sync_all().unwrap();
    fs::hard_link(m.path("sst"), m.path("checkpoint-sst")).unwrap();
    sync_dir(m.fs.mountpoint());
    m.cut();
    assert_eq!(fs::read(m.path("sst")).unwrap(), big);
    assert_eq!(fs::read(m.path("checkpoint-sst")).unwrap(), big);
}

#[test]
fn fsyncs_answer_after_the_configured_delay() {
    if !root_or_skip("fsyncs_answer_after_the_configured_delay") {
        return;
    }
    let m = Mounted::new();
    let control = m.fs.control();
    control.set_fsync_delay(Duration::from_millis(300));
    let mut f = File::create(m.path("slow")).unwrap();
    f.write_all(b"x").unwrap();
    let started = Instant::now();
    f.sync_all().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300), "answered after {:?}", started.elapsed());
    control.set_fsync_delay(Duration::ZERO);
    assert!(control.stats().file_syncs >= 1);
}
