//! WASI's `path_*` functions and `fd_readdir` (SPEC W1): opening, creating,
//! reading directories with cookies, the path operations, confinement
//! beneath the dir fd (`..`, absolute paths and symbolic links out are
//! `EPERM`, as wasmtime-wasi answers), rights (advisory, as wasmtime's),
//! and no fd left behind.
//!
//! The guest is the WAT driver of every WASI function (`wasi_driver`); the
//! test pokes paths into its memory and calls. Every test takes
//! `serial()`: they open fds and one counts them.

use std::path::Path;

use custody_host::{Domain, DomainConfig, Val};
use custody_testkit::*;

const EBADF: i32 = 8;
const EEXIST: i32 = 20;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const EISDIR: i32 = 31;
const ELOOP: i32 = 32;
const ENOENT: i32 = 44;
const ENOTDIR: i32 = 54;
const ENOTEMPTY: i32 = 55;
const ENOTSUP: i32 = 58;
const EPERM: i32 = 63;

const FD_READ: i64 = 1 << 1;
const FD_SEEK: i64 = 1 << 2;
const FD_WRITE: i64 = 1 << 6;
const PATH_OPEN: i64 = 1 << 13;
const FD_READDIR: i64 = 1 << 14;
/// Every right of the witx.
const ALL_RIGHTS: i64 = (1 << 30) - 1;
/// Every right a pre-open passes on (what wasi-libc asks for, less).
const FILE_RIGHTS: i64 = FD_READ | FD_SEEK | FD_WRITE | (1 << 5) | (1 << 21);

const CREAT: i32 = 1;
const DIRECTORY: i32 = 2;
const EXCL: i32 = 4;
const TRUNC: i32 = 8;

/// Where the driver's memory holds a path, a second path, and results.
const PATH: i32 = 2000;
const PATH2: i32 = 3000;
const OUT: i32 = 4000;

fn domain(dir: &Path) -> Domain {
    let host = host();
    let module = host.compile(wasi_driver("").as_bytes()).unwrap();
    let domain = host
        .create_domain(DomainConfig::new().preopen("data", dir))
        .unwrap();
    domain.load("main", &module).unwrap();
    domain
}

/// `path_open(dir, path)`: the new fd, or the errno.
fn open_with(
    domain: &Domain,
    dir: i32,
    path: &str,
    oflags: i32,
    (base, inheriting): (i64, i64),
    fdflags: i32,
    follow: bool,
) -> Result<i32, i32> {
    poke(domain, PATH, path.as_bytes());
    let errno = wcall(
        domain,
        "w_path_open",
        &[
            Val::I32(dir),
            Val::I32(follow as i32),
            Val::I32(PATH),
            Val::I32(path.len() as i32),
            Val::I32(oflags),
            Val::I64(base),
            Val::I64(inheriting),
            Val::I32(fdflags),
            Val::I32(OUT),
        ],
    );
    match errno {
        0 => Ok(call(domain, "load", &[OUT])),
        errno => Err(errno),
    }
}

fn open(domain: &Domain, path: &str, oflags: i32, base: i64) -> Result<i32, i32> {
    open_with(domain, 3, path, oflags, (base, base), 0, true)
}

/// Calls `name(3, path, len)` (the one-path functions).
fn on_path(domain: &Domain, name: &str, path: &str) -> i32 {
    poke(domain, PATH, path.as_bytes());
    call(domain, name, &[3, PATH, path.len() as i32])
}

fn write(domain: &Domain, fd: i32, bytes: &[u8]) -> i32 {
    poke(domain, 100, bytes);
    iovec(domain, 0, 100, bytes.len() as i32);
    assert_eq!(call(domain, "w_fd_write", &[fd, 0, 1, 16]), 0);
    call(domain, "load", &[16])
}

fn read(domain: &Domain, fd: i32, len: i32) -> Vec<u8> {
    iovec(domain, 0, 100, len);
    assert_eq!(call(domain, "w_fd_read", &[fd, 0, 1, 16]), 0);
    let n = call(domain, "load", &[16]);
    peek(domain, 100, n)
}

#[test]
fn open_create_write_and_read_back() {
    let _serial = serial();
    let dir = scratch("wasi-path-open");
    let domain = domain(&dir);
    let fd = open(&domain, "f", CREAT | TRUNC, FILE_RIGHTS).unwrap();
    assert_eq!(write(&domain, fd, b"hello"), 5);
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"hello");
    let again = open(&domain, "f", 0, FD_READ).unwrap();
    assert_eq!(read(&domain, again, 64), b"hello");
    // Asked for no FD_WRITE: opened read-only, so a write is the kernel's
    // EBADF (as wasmtime's answer for a file not opened for writing).
    poke(&domain, 100, b"x");
    iovec(&domain, 0, 100, 1);
    assert_eq!(call(&domain, "w_fd_write", &[again, 0, 1, 16]), EBADF);
    assert_eq!(open(&domain, "f", CREAT | EXCL, FILE_RIGHTS), Err(EEXIST));
    assert_eq!(open(&domain, "missing", 0, FD_READ), Err(ENOENT));
    assert_eq!(open(&domain, "f", DIRECTORY, FD_READ), Err(ENOTDIR));
    assert_eq!(open(&domain, "d", DIRECTORY | CREAT, FD_READ), Err(EINVAL));
    assert_eq!(
        open(&domain, "f", 16, FD_READ),
        Err(EINVAL),
        "unknown oflag"
    );
    let flags = |fdflags| open_with(&domain, 3, "f", 0, (FD_READ, 0), fdflags, true);
    assert_eq!(flags(1 << 5), Err(EINVAL), "unknown fdflag");
    assert_eq!(flags(1 << 4), Err(ENOTSUP), "SYNC, as wasmtime");
    let appending = flags(1).unwrap();
    assert_eq!(call(&domain, "w_fd_fdstat_get", &[appending, 400]), 0);
    assert_eq!(call(&domain, "load16", &[402]) & 1, 1, "APPEND");
    // An fd that is a file is no directory to open beneath.
    assert_eq!(
        open_with(&domain, fd, "x", 0, (FD_READ, 0), 0, true),
        Err(ENOTDIR)
    );
    // Wild pointers: EFAULT, and nothing stays open.
    let before = domain.table().len();
    let errno = wcall(
        &domain,
        "w_path_open",
        &[
            Val::I32(3),
            Val::I32(0),
            Val::I32(PATH),
            Val::I32(1),
            Val::I32(0),
            Val::I64(FD_READ),
            Val::I64(0),
            Val::I32(0),
            Val::I32(70_000),
        ],
    );
    assert_eq!(errno, EFAULT);
    assert_eq!(call(&domain, "w_path_unlink_file", &[3, 70_000, 4]), EFAULT);
    assert_eq!(call(&domain, "w_path_unlink_file", &[3, PATH, -1]), EFAULT);
    assert_eq!(domain.table().len(), before);
    // A directory opens too, and files open beneath it.
    std::fs::create_dir(dir.join("sub")).unwrap();
    let dir_rights = (FD_READDIR | PATH_OPEN | (1 << 10), FILE_RIGHTS);
    let sub = open_with(&domain, 3, "sub", DIRECTORY, dir_rights, 0, true).unwrap();
    let inner = open_with(&domain, sub, "g", CREAT, (FILE_RIGHTS, 0), 0, true).unwrap();
    assert_eq!(write(&domain, inner, b"in"), 2);
    assert_eq!(std::fs::read(dir.join("sub/g")).unwrap(), b"in");
    // A directory does not seek (the kernel would): EBADF, as wasmtime.
    let seek = [Val::I32(sub), Val::I64(0), Val::I32(1), Val::I32(OUT)];
    assert_eq!(wcall(&domain, "w_fd_seek", &seek), EBADF);
}

#[test]
fn a_fifo_opens_without_blocking() {
    let _serial = serial();
    let dir = scratch("wasi-path-fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let domain = domain(&dir);
    // No writer: a blocking open would never return.
    assert!(open(&domain, "pipe", 0, FD_READ).is_ok());
}

/// Reads the whole directory through `fd_readdir` with a `buf_len`-byte
/// buffer, calling again from the last whole entry's cookie: the names,
/// and how many calls it took.
fn list(domain: &Domain, fd: i32, buf_len: i32) -> (Vec<String>, usize) {
    let (mut names, mut cookie, mut calls) = (Vec::new(), 0i64, 0);
    loop {
        calls += 1;
        let errno = wcall(
            domain,
            "w_fd_readdir",
            &[
                Val::I32(fd),
                Val::I32(OUT),
                Val::I32(buf_len),
                Val::I64(cookie),
                Val::I32(16),
            ],
        );
        assert_eq!(errno, 0);
        let used = call(domain, "load", &[16]);
        let bytes = peek(domain, OUT, used);
        let mut at = 0;
        while at + 24 <= bytes.len() {
            let next = i64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            let len = u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
            if at + 24 + len > bytes.len() {
                break;
            }
            names.push(String::from_utf8(bytes[at + 24..at + 24 + len].to_vec()).unwrap());
            cookie = next;
            at += 24 + len;
        }
        if used < buf_len {
            return (names, calls);
        }
    }
}

#[test]
fn readdir_cookies_hold_across_calls() {
    let _serial = serial();
    let dir = scratch("wasi-path-readdir");
    let mut expected = vec![".".to_owned(), "..".to_owned()];
    for i in 0..20 {
        let name = format!("entry-{i:04}");
        std::fs::write(dir.join(&name), b"").unwrap();
        expected.push(name);
    }
    std::fs::create_dir(dir.join("a-dir")).unwrap();
    expected.push("a-dir".to_owned());
    let domain = domain(&dir);
    // Small: three entries a call at most.
    let (mut names, calls) = list(&domain, 3, 100);
    assert!(calls > 5, "{calls} calls");
    let (mut whole, one) = list(&domain, 3, 4000);
    assert_eq!(one, 1);
    assert_eq!(names, whole, "the same order whatever the buffer");
    names.sort();
    whole.sort();
    expected.sort();
    assert_eq!(names, expected);
    // A directory the guest opened reads the same.
    let opened = open(&domain, ".", DIRECTORY, FD_READDIR).unwrap();
    let (mut again, _) = list(&domain, opened, 64);
    again.sort();
    assert_eq!(again, expected);
    // A cookie past the end: nothing. A file: EBADF (wasmtime's answer).
    let past = [
        Val::I32(3),
        Val::I32(OUT),
        Val::I32(100),
        Val::I64(1000),
        Val::I32(16),
    ];
    assert_eq!(wcall(&domain, "w_fd_readdir", &past), 0);
    assert_eq!(call(&domain, "load", &[16]), 0);
    let file = open(&domain, "entry-0000", 0, FD_READ).unwrap();
    let on_file = [
        Val::I32(file),
        Val::I32(OUT),
        Val::I32(100),
        Val::I64(0),
        Val::I32(16),
    ];
    assert_eq!(wcall(&domain, "w_fd_readdir", &on_file), 8);
    let wild = [
        Val::I32(3),
        Val::I32(65_500),
        Val::I32(100),
        Val::I64(0),
        Val::I32(16),
    ];
    assert_eq!(wcall(&domain, "w_fd_readdir", &wild), EFAULT);
}

#[test]
fn mkdir_unlink_rmdir_rename_symlink_readlink_link() {
    let _serial = serial();
    let dir = scratch("wasi-path-ops");
    let domain = domain(&dir);
    assert_eq!(on_path(&domain, "w_path_create_directory", "d"), 0);
    assert!(dir.join("d").is_dir());
    assert_eq!(on_path(&domain, "w_path_create_directory", "d"), EEXIST);
    assert_eq!(on_path(&domain, "w_path_create_directory", "d/e/"), 0);
    std::fs::write(dir.join("d/f"), b"12345").unwrap();
    assert_eq!(on_path(&domain, "w_path_remove_directory", "d"), ENOTEMPTY);
    assert_eq!(on_path(&domain, "w_path_unlink_file", "d/f/"), ENOTDIR);
    assert_eq!(on_path(&domain, "w_path_unlink_file", "d/e"), EISDIR);
    // rename d/f -> g
    poke(&domain, PATH, b"d/f");
    poke(&domain, PATH2, b"g");
    assert_eq!(
        call(&domain, "w_path_rename", &[3, PATH, 3, 3, PATH2, 1]),
        0
    );
    assert_eq!(std::fs::read(dir.join("g")).unwrap(), b"12345");
    // path_filestat_get: a regular file of 5 bytes.
    poke(&domain, PATH, b"g");
    assert_eq!(
        call(&domain, "w_path_filestat_get", &[3, 1, PATH, 1, OUT]),
        0
    );
    assert_eq!(call(&domain, "load8", &[OUT + 16]), 4);
    assert_eq!(call(&domain, "load", &[OUT + 32]), 5);
    // symlink l -> g, read back; stat without following says a link.
    poke(&domain, PATH, b"g");
    poke(&domain, PATH2, b"l");
    assert_eq!(call(&domain, "w_path_symlink", &[PATH, 1, 3, PATH2, 1]), 0);
    assert_eq!(
        call(&domain, "w_path_readlink", &[3, PATH2, 1, OUT, 64, 16]),
        0
    );
    assert_eq!(call(&domain, "load", &[16]), 1);
    assert_eq!(peek(&domain, OUT, 1), b"g");
    assert_eq!(
        call(&domain, "w_path_filestat_get", &[3, 0, PATH2, 1, OUT]),
        0
    );
    assert_eq!(call(&domain, "load8", &[OUT + 16]), 7, "a symbolic link");
    assert_eq!(
        call(&domain, "w_path_filestat_get", &[3, 1, PATH2, 1, OUT]),
        0
    );
    assert_eq!(call(&domain, "load8", &[OUT + 16]), 4, "followed");
    // Not following a last symlink on open: ELOOP, as O_NOFOLLOW says.
    assert_eq!(
        open_with(&domain, 3, "l", 0, (FD_READ, 0), 0, false),
        Err(ELOOP)
    );
    // A hard link; following a symlink for one is EINVAL (wasmtime).
    poke(&domain, PATH2, b"h");
    assert_eq!(
        call(&domain, "w_path_link", &[3, 0, PATH, 1, 3, PATH2, 1]),
        0
    );
    assert_eq!(std::fs::read(dir.join("h")).unwrap(), b"12345");
    assert_eq!(
        call(&domain, "w_path_link", &[3, 1, PATH, 1, 3, PATH2, 1]),
        EINVAL
    );
    // Times by path: mtime set to 10 s.
    poke(&domain, PATH, b"g");
    let times = [
        Val::I32(3),
        Val::I32(1),
        Val::I32(PATH),
        Val::I32(1),
        Val::I64(0),
        Val::I64(10_000_000_000),
        Val::I32(4),
    ];
    assert_eq!(wcall(&domain, "w_path_filestat_set_times", &times), 0);
    let mtime = std::fs::metadata(dir.join("g"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        10
    );
    assert_eq!(on_path(&domain, "w_path_unlink_file", "h"), 0);
    assert_eq!(on_path(&domain, "w_path_unlink_file", "l"), 0);
    assert!(dir.join("g").exists(), "unlinking a link leaves its target");
    assert_eq!(on_path(&domain, "w_path_remove_directory", "d/e"), 0);
    assert_eq!(on_path(&domain, "w_path_remove_directory", "d"), 0);
    assert!(!dir.join("d").exists());
    assert_eq!(on_path(&domain, "w_path_unlink_file", ""), ENOENT);
}

#[test]
fn nothing_escapes_the_directory() {
    let _serial = serial();
    let outer = scratch("wasi-path-confine");
    let dir = outer.join("inner");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(outer.join("secret"), b"s").unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
    std::os::unix::fs::symlink("../secret", dir.join("up")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    let domain = domain(&dir);
    let before = domain.table().len();
    for path in [
        "../secret",
        "/etc/passwd",
        "etc/passwd",
        "up",
        "sub/../../secret",
        "..",
    ] {
        assert_eq!(open(&domain, path, 0, FD_READ), Err(EPERM), "{path}");
    }
    assert_eq!(domain.table().len(), before, "nothing opened");
    // Inside is fine, `..` included.
    assert!(open(&domain, "sub/..", DIRECTORY, FD_READDIR).is_ok());
    for name in [
        "w_path_create_directory",
        "w_path_unlink_file",
        "w_path_remove_directory",
    ] {
        for path in ["../x", "/tmp/x", "etc/x", ".."] {
            assert_eq!(on_path(&domain, name, path), EPERM, "{name} {path}");
        }
    }
    poke(&domain, PATH, b"../secret");
    assert_eq!(
        call(&domain, "w_path_filestat_get", &[3, 1, PATH, 9, OUT]),
        EPERM
    );
    poke(&domain, PATH, b"up");
    assert_eq!(
        call(&domain, "w_path_filestat_get", &[3, 1, PATH, 2, OUT]),
        EPERM
    );
    // Renaming or linking out: EPERM, and the secret stays.
    poke(&domain, PATH2, b"../secret");
    poke(&domain, PATH, b"sub");
    assert_eq!(
        call(&domain, "w_path_rename", &[3, PATH2, 9, 3, PATH, 3]),
        EPERM
    );
    assert_eq!(
        call(&domain, "w_path_link", &[3, 0, PATH2, 9, 3, PATH, 3]),
        EPERM
    );
    assert!(outer.join("secret").exists());
    assert!(!dir.join("x").exists() && !outer.join("x").exists());
}

#[test]
fn rights_are_advisory_and_confinement_does_not_rest_on_them() {
    let _serial = serial();
    let dir = scratch("wasi-path-rights");
    std::fs::write(dir.join("f"), b"x").unwrap();
    let domain = domain(&dir);
    // The official suite's Rust helper: a directory just created, opened
    // asking for rights the pre-open's inheriting rights do not hold (all
    // but FD_WRITE, which would make it a write open: EISDIR under
    // wasmtime on Linux too). wasmtime opens it; so does custody.
    assert_eq!(call(&domain, "w_fd_fdstat_get", &[3, 400]), 0);
    let announced = domain.call("load64", &[Val::I32(416)]).unwrap()[0].unwrap_i64();
    assert_ne!(
        announced & ALL_RIGHTS,
        ALL_RIGHTS,
        "the pre-open passes on less"
    );
    assert_eq!(on_path(&domain, "w_path_create_directory", "tmp"), 0);
    let everything = (ALL_RIGHTS, ALL_RIGHTS);
    let dir_rights = (ALL_RIGHTS & !FD_WRITE, ALL_RIGHTS);
    let tmp = open_with(&domain, 3, "tmp", DIRECTORY, dir_rights, 0, true).unwrap();
    let inner = open_with(&domain, tmp, "g", CREAT, everything, 0, true).unwrap();
    assert_eq!(write(&domain, inner, b"in"), 2);
    assert_eq!(std::fs::read(dir.join("tmp/g")).unwrap(), b"in");
    // Setting rights is ENOTSUP and takes nothing away.
    let none = [Val::I32(3), Val::I64(0), Val::I64(0)];
    assert_eq!(wcall(&domain, "w_fd_fdstat_set_rights", &none), ENOTSUP);
    assert!(open(&domain, "f", 0, FD_READ | FD_WRITE).is_ok());
    assert_eq!(on_path(&domain, "w_path_unlink_file", "f"), 0);
    assert!(!dir.join("f").exists());
    // Every right asked for opens nothing outside: `..` out of the opened
    // directory's pre-open is EPERM, as wasmtime answers.
    assert_eq!(
        open_with(&domain, tmp, "../..", DIRECTORY, dir_rights, 0, true),
        Err(EPERM)
    );
    assert_eq!(open(&domain, "/etc/passwd", 0, ALL_RIGHTS), Err(EPERM));
}

#[test]
fn files_and_dirs_left_open_are_released_at_unload() {
    let _serial = serial();
    let dir = scratch("wasi-path-leaks");
    std::fs::create_dir(dir.join("sub")).unwrap();
    let baseline = FdBaseline::now();
    let domain = domain(&dir);
    for i in 0..5 {
        open(&domain, &format!("f{i}"), CREAT, FILE_RIGHTS).unwrap();
        open(&domain, "sub", DIRECTORY, FD_READDIR | PATH_OPEN).unwrap();
    }
    let (_, _) = list(&domain, 3, 64);
    assert_eq!(on_path(&domain, "w_path_create_directory", "new"), 0);
    assert!(domain.table().len() >= 10);
    let report = domain.unload().unwrap();
    assert!(report.ledger.released_at_unload >= 10, "{report:?}");
    drop(domain);
    baseline.assert_back("a WASI guest's path_open fds");
}
