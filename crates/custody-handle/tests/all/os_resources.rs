//! The OS resources against the real kernel: fds, mappings and child
//! processes, with leak checks on `/proc/self/fd`.
//!
//! Every test takes `serial()`: they count the process's fds and some close
//! a raw fd behind a handle's back, which must not race another test's open
//! (the fd number could be reused).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use custody_handle::diagnostics::{Assistant, Collector};
use custody_handle::history::{self, EventKind, Mode};
use custody_handle::testing::{fd_is_open, open_fds, serial};
use custody_handle::{
    Child, CriticalHandle, Fd, HandleError, HandleTable, Mapping, ReleaseHandle, SafeHandle,
};

fn dev_null() -> File {
    File::open("/dev/null").unwrap()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = std::io::pipe().unwrap();
    (OwnedFd::from(r), OwnedFd::from(w))
}

/// Closes a raw fd directly, as buggy code that copied it out would.
fn close_behind_the_back(raw: i32) {
    // SAFETY: deliberate misuse under test: the handle still claims the fd;
    // `serial()` keeps any other test from being given this number meanwhile.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
}

#[test]
fn a_raw_fd_closed_behind_the_handles_back_fails_its_release_loudly() {
    let _serial = serial();
    custody_handle::diagnostics::capture_for_tests();
    let collector = Collector::start();
    let before = custody_handle::diagnostics::count(Assistant::ReleaseHandleFailed);
    let handle = SafeHandle::<Fd>::from(dev_null());
    let raw = handle.dangerous_get_handle().raw();
    close_behind_the_back(raw);

    let error = handle.dispose().unwrap_err();
    let HandleError::ReleaseFailed(io) = error else {
        panic!("expected ReleaseFailed, got {error:?}");
    };
    assert_eq!(io.raw_os_error(), Some(libc::EBADF));
    assert!(handle.is_closed());
    assert!(custody_handle::diagnostics::count(Assistant::ReleaseHandleFailed) > before);

    let hex = format!("0x{raw:08X}");
    let seen = collector.matching(|d| {
        d.assistant == Assistant::ReleaseHandleFailed && d.raw_hex.as_deref() == Some(&hex)
    });
    assert_eq!(seen.len(), 1);
    let report = seen[0].render();
    assert!(report.contains("custody_handle::os::fd::Fd"), "{report}");
    assert!(report.contains(&hex), "{report}");
    assert!(report.contains("Bad file descriptor"), "{report}");
    assert!(report.contains("copied out"), "{report}");
    assert_eq!(seen[0].errno, Some(libc::EBADF));
}

#[test]
fn history_names_the_other_owner_that_released_the_value_first() {
    let _serial = serial();
    custody_handle::diagnostics::capture_for_tests();
    history::set_mode(Mode::On);
    history::clear();
    let collector = Collector::start();

    let first = SafeHandle::<Fd>::from(dev_null());
    let raw = first.dangerous_get_handle().raw();
    // The double-ownership bug: a second owning wrapper around the same value.
    // SAFETY: deliberate misuse under test (the fd is owned by `first`).
    let second = SafeHandle::new(unsafe { Fd::from_raw_fd(raw) });
    first.dispose().unwrap();
    assert!(second.dispose().is_err());
    history::set_mode(Mode::Off);

    let seen = collector.matching(|d| {
        d.assistant == Assistant::ReleaseHandleFailed && d.raw_value == Some(raw as u64)
    });
    assert_eq!(seen.len(), 1);
    let events = &seen[0].history;
    let released_first = events
        .iter()
        .find(|e| e.kind == EventKind::ReleaseHandle)
        .expect("the first owner's release is in the history");
    let failed = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::ReleaseFailed(_)))
        .expect("the failed release is in the history");
    assert_ne!(released_first.owner, failed.owner, "two different owners");
    assert!(
        released_first.seq < failed.seq,
        "the other owner released first"
    );
    let creations = events
        .iter()
        .filter(|e| e.kind == EventKind::Created)
        .count();
    assert_eq!(creations, 2, "both owners' creations are recorded");
    let culprit = seen[0]
        .culprit
        .as_deref()
        .expect("the history names a culprit");
    assert!(
        culprit.starts_with(&format!("owner {} ", released_first.owner)),
        "{culprit}"
    );
    let report = seen[0].render();
    assert!(
        report.contains("Culprit, from the history: owner"),
        "{report}"
    );
    assert!(report.contains("History of"), "{report}");
    assert!(report.contains("release_handle ok"), "{report}");
    let json: serde_json::Value = serde_json::from_str(&seen[0].to_json()).unwrap();
    assert_eq!(json["history"].as_array().unwrap().len(), events.len());
}

#[test]
fn dup_makes_an_independent_handle() {
    let _serial = serial();
    let baseline = open_fds();
    let (r, w) = pipe();
    let writer = SafeHandle::<Fd>::from(w);
    let duplicate = writer.dup().unwrap();
    assert_ne!(writer.raw_value(), duplicate.raw_value());
    writer.dispose().unwrap();
    {
        let guard = duplicate.acquire().unwrap();
        let mut file = File::from(guard.as_fd().try_clone_to_owned().unwrap());
        file.write_all(b"still open").unwrap();
    }
    duplicate.dispose().unwrap();
    let mut text = String::new();
    File::from(r).read_to_string(&mut text).unwrap();
    assert_eq!(text, "still open");
    assert!(matches!(writer.dup(), Err(HandleError::Closed)));
    assert_eq!(open_fds(), baseline);
}

#[test]
fn fd_handles_leak_nothing() {
    let _serial = serial();
    let baseline = open_fds();
    for _ in 0..50 {
        let a = SafeHandle::<Fd>::from(dev_null());
        let b = a.clone();
        let guard = b.acquire().unwrap();
        a.dispose().unwrap();
        assert!(
            fd_is_open(guard.as_raw_fd()),
            "deferred while the guard lives"
        );
        drop(guard);
        let (r, w) = pipe();
        let _dropped_not_disposed = SafeHandle::<Fd>::from(r);
        let critical = CriticalHandle::<Fd>::from(w);
        assert!(critical.as_fd().as_raw_fd() >= 0);
        let table = HandleTable::new();
        table.insert(Fd::from(dev_null())).unwrap();
        let kept = table.insert(Fd::from(dev_null())).unwrap();
        table.close(kept).unwrap();
    }
    assert_eq!(open_fds(), baseline);
}

#[test]
fn an_fd_roundtrips_through_owned_fd() {
    let _serial = serial();
    let baseline = open_fds();
    let fd = Fd::from(dev_null());
    let raw = fd.raw();
    let owned = fd.into_owned_fd().unwrap();
    assert_eq!(owned.as_raw_fd(), raw);
    drop(owned);
    assert!(Fd::INVALID.is_invalid());
    assert!(Fd::INVALID.into_owned_fd().is_none());
    assert_eq!(open_fds(), baseline);
}

#[test]
fn critical_handle_closes_once_and_reports_failure() {
    let _serial = serial();
    custody_handle::diagnostics::capture_for_tests();
    let baseline = open_fds();
    let handle = CriticalHandle::<Fd>::from(dev_null());
    let raw = handle.raw();
    assert!(fd_is_open(raw));
    handle.close().unwrap();
    assert!(!fd_is_open(raw));

    let dropped = CriticalHandle::<Fd>::from(dev_null());
    let raw = dropped.raw();
    drop(dropped);
    assert!(!fd_is_open(raw));

    let mut given_away = CriticalHandle::<Fd>::from(dev_null());
    let raw = given_away.raw();
    given_away.set_handle_as_invalid();
    assert!(given_away.is_closed());
    drop(given_away);
    assert!(fd_is_open(raw), "set invalid: not released");
    close_behind_the_back(raw);

    let broken = CriticalHandle::<Fd>::from(dev_null());
    close_behind_the_back(broken.raw());
    assert!(matches!(broken.close(), Err(HandleError::ReleaseFailed(_))));
    assert_eq!(open_fds(), baseline);
}

/// The lines of `/proc/self/maps`, each with its address range.
fn mappings() -> Vec<(std::ops::Range<usize>, String)> {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .map(|line| {
            let (range, _) = line.split_once(' ').unwrap();
            let (start, end) = range.split_once('-').unwrap();
            let start = usize::from_str_radix(start, 16).unwrap();
            let end = usize::from_str_radix(end, 16).unwrap();
            (start..end, line.to_owned())
        })
        .collect()
}

fn is_mapped(addr: usize) -> bool {
    mappings().iter().any(|(range, _)| range.contains(&addr))
}

/// Whether exactly `addr..addr + len` is still one mapping. Once unmapped, the
/// address itself may be reused at once by another thread's mapping (a thread
/// stack, an allocator arena), so "nothing at `addr`" is not a sound check.
fn is_mapped_exactly(addr: usize, len: usize) -> bool {
    mappings()
        .iter()
        .any(|(range, _)| *range == (addr..addr + len))
}

#[test]
fn a_mapping_is_unmapped_exactly_once() {
    let _serial = serial();
    let handle = SafeHandle::new(Mapping::anonymous(1 << 20).unwrap());
    let addr = handle.dangerous_get_handle().addr();
    assert!(is_mapped(addr));
    {
        let guard = handle.acquire().unwrap();
        assert_eq!(guard.bytes().len(), 1 << 20);
        assert!(guard.bytes().iter().all(|&b| b == 0));
        handle.dispose().unwrap();
        assert!(is_mapped(addr), "deferred while the guard lives");
    }
    assert!(!is_mapped_exactly(addr, 1 << 20));
    assert!(Mapping::anonymous(0).is_err());
}

#[test]
fn a_file_mapping_shows_the_file_and_outlives_the_fd() {
    let _serial = serial();
    let baseline = open_fds();
    let path = std::env::temp_dir().join(format!("custody-map-{}", std::process::id()));
    fs::write(&path, b"mapped bytes").unwrap();
    let mapping = Mapping::of_file(File::open(&path).unwrap(), 12, 0).unwrap();
    let critical = CriticalHandle::new(mapping);
    assert_eq!(critical.bytes(), b"mapped bytes");
    let addr = critical.addr();
    let name = path.to_str().unwrap();
    let names_the_file = |(range, line): &(std::ops::Range<usize>, String)| {
        range.contains(&addr) && line.ends_with(name)
    };
    assert!(mappings().iter().any(names_the_file));
    drop(critical);
    // The file is named by no mapping any more (its address may be reused).
    assert!(!mappings().iter().any(|(_, line)| line.ends_with(name)));
    fs::remove_file(&path).unwrap();
    assert_eq!(open_fds(), baseline);
}

fn process_exists(pid: u32) -> bool {
    // A zombie still has a /proc entry: gone means killed *and* reaped.
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

#[test]
fn a_dropped_child_is_killed_and_reaped() {
    let _serial = serial();
    let baseline = open_fds();
    let child = Child::spawn(Command::new("sleep").arg("60")).unwrap();
    let pid = child.pid();
    let handle = SafeHandle::new(child);
    assert!(process_exists(pid));
    assert!(handle.acquire().unwrap().try_wait().unwrap().is_none());
    drop(handle);
    assert!(!process_exists(pid), "killed and reaped: no zombie");
    assert_eq!(open_fds(), baseline);
}

#[test]
fn a_child_that_already_exited_is_reaped_on_release() {
    let _serial = serial();
    let child = Child::spawn(&mut Command::new("true")).unwrap();
    let pid = child.pid();
    let handle = CriticalHandle::new(child);
    // Wait until it is a zombie (exited, not reaped).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
    {
        assert!(std::time::Instant::now() < deadline, "child did not exit");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    handle.close().unwrap();
    assert!(!process_exists(pid));
}
