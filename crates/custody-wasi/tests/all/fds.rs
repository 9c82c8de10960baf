//! WASI's fds (SPEC W1): the numbering (stdio, pre-opens from 3, table ids
//! above), `fd_prestat_*`, `fd_fdstat_*` (rights advisory, as wasmtime's),
//! `fd_filestat_*`, `fd_renumber` and `fd_close`, and the custody ABI and
//! WASI sharing one table.
//!
//! Every test takes `serial()`: they open fds and some count them.

use custody_host::{Domain, DomainConfig, Val};
use custody_testkit::*;
use custody_wasi::WasiDomain;

const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const ENAMETOOLONG: i32 = 37;
const ENOTDIR: i32 = 54;
const ENOTSUP: i32 = 58;

const FD_READ: i64 = 1 << 1;
const FD_WRITE: i64 = 1 << 6;

fn domain(config: DomainConfig) -> Domain {
    wasi_domain(&host(), config, "")
}

fn open(domain: &Domain, path: &str, flags: i32) -> i32 {
    poke(domain, 2000, path.as_bytes());
    assert_eq!(
        call(domain, "abi_open", &[2000, path.len() as i32, flags, 2100]),
        0,
        "open {path}"
    );
    call(domain, "load", &[2100])
}

/// (filetype, flags, rights base, rights inheriting) of `fd`.
fn fdstat(domain: &Domain, fd: i32) -> Result<(u8, u16, i64, i64), i32> {
    match call(domain, "w_fd_fdstat_get", &[fd, 400]) {
        0 => Ok((
            call(domain, "load8", &[400]) as u8,
            call(domain, "load16", &[402]) as u16,
            domain.call("load64", &[Val::I32(408)]).unwrap()[0].unwrap_i64(),
            domain.call("load64", &[Val::I32(416)]).unwrap()[0].unwrap_i64(),
        )),
        errno => Err(errno),
    }
}

#[test]
fn pre_opens_are_fds_from_3_in_order_under_their_names() {
    let _serial = serial();
    let (a, b) = (scratch("wasi-pre-a"), scratch("wasi-pre-b"));
    let domain = domain(DomainConfig::new().preopen(".", &a).preopen("/sandbox", &b));
    assert_eq!(call(&domain, "w_fd_prestat_get", &[3, 0]), 0);
    assert_eq!(call(&domain, "load8", &[0]), 0, "a directory");
    assert_eq!(call(&domain, "load", &[4]), 1);
    assert_eq!(call(&domain, "w_fd_prestat_get", &[4, 0]), 0);
    assert_eq!(call(&domain, "load", &[4]), 8);
    assert_eq!(call(&domain, "w_fd_prestat_dir_name", &[4, 100, 8]), 0);
    assert_eq!(peek(&domain, 100, 8), b"/sandbox");
    assert_eq!(
        call(&domain, "w_fd_prestat_dir_name", &[4, 100, 7]),
        ENAMETOOLONG
    );
    // wasi-libc scans from 3 until EBADF.
    assert_eq!(call(&domain, "w_fd_prestat_get", &[5, 0]), EBADF);
    assert_eq!(call(&domain, "w_fd_prestat_get", &[1, 0]), EBADF);
    assert_eq!(
        call(&domain, "w_fd_prestat_dir_name", &[1, 100, 8]),
        ENOTDIR
    );
    assert_eq!(fdstat(&domain, 3).unwrap().0, 3, "a directory");
    assert_eq!(call(&domain, "w_fd_filestat_get", &[3, 500]), 0);
    assert_eq!(call(&domain, "load8", &[516]), 3);
}

#[test]
fn fdstat_says_what_an_fd_is_and_rights_are_advisory() {
    let _serial = serial();
    let dir = scratch("wasi-fdstat");
    let domain = domain(DomainConfig::new().preopen("data", &dir));
    let (kind, _, base, _) = fdstat(&domain, 1).unwrap();
    assert_eq!(
        (kind, base),
        (0, FD_WRITE),
        "stdout: unknown type, write only"
    );
    let fd = open(&domain, "data/f", 1 | 2 | 4);
    let (kind, flags, base, _) = fdstat(&domain, fd).unwrap();
    assert_eq!((kind, flags), (4, 0), "a regular file");
    assert_eq!(base & (FD_READ | FD_WRITE), FD_READ | FD_WRITE);
    // APPEND set and seen.
    assert_eq!(call(&domain, "w_fd_fdstat_set_flags", &[fd, 1]), 0);
    assert_eq!(fdstat(&domain, fd).unwrap().1, 1);
    assert_eq!(
        call(&domain, "w_fd_fdstat_set_flags", &[fd, 2]),
        EINVAL,
        "DSYNC"
    );
    assert_eq!(
        call(&domain, "w_fd_fdstat_set_flags", &[fd, 64]),
        EINVAL,
        "unknown"
    );
    // Rights are advisory, as in wasmtime-wasi's preview 1: setting them
    // is ENOTSUP and changes nothing; what an fd can do is how it opened.
    let set = |fd: i32, base: i64| {
        wcall(
            &domain,
            "w_fd_fdstat_set_rights",
            &[Val::I32(fd), Val::I64(base), Val::I64(0)],
        )
    };
    assert_eq!(set(fd, FD_READ), ENOTSUP);
    assert_eq!(fdstat(&domain, fd).unwrap().2 & FD_WRITE, FD_WRITE);
    poke(&domain, 100, b"x");
    iovec(&domain, 0, 100, 1);
    assert_eq!(call(&domain, "w_fd_write", &[fd, 0, 1, 16]), 0);
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"x");
    // A read-only file reports no FD_WRITE, and a write is the kernel's EBADF.
    let read_only = open(&domain, "data/f", 1);
    assert_eq!(fdstat(&domain, read_only).unwrap().2 & FD_WRITE, 0);
    assert_eq!(call(&domain, "w_fd_write", &[read_only, 0, 1, 16]), EBADF);
    // stdio: ENOTSUP too, and stdout still writes.
    assert_eq!(set(1, 0), ENOTSUP);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), 0);
    assert_eq!(domain.take_stdout(), b"x");
    // A closed fd is EBADF, as wasmtime checks the fd first.
    assert_eq!(call(&domain, "w_fd_close", &[fd]), 0);
    assert_eq!(fdstat(&domain, fd), Err(EBADF));
    assert_eq!(set(fd, FD_READ), EBADF);
}

#[test]
fn filestat_reports_and_sets_size_and_times() {
    let _serial = serial();
    let dir = scratch("wasi-filestat");
    std::fs::write(dir.join("f"), b"12345").unwrap();
    let domain = domain(DomainConfig::new().preopen("data", &dir));
    let fd = open(&domain, "data/f", 1 | 2);
    assert_eq!(call(&domain, "w_fd_filestat_get", &[fd, 500]), 0);
    assert_eq!(call(&domain, "load8", &[516]), 4, "a regular file");
    let size = |domain: &Domain| domain.call("load64", &[Val::I32(532)]).unwrap()[0].unwrap_i64();
    assert_eq!(size(&domain), 5);
    assert_eq!(
        wcall(
            &domain,
            "w_fd_filestat_set_size",
            &[Val::I32(fd), Val::I64(2)]
        ),
        0
    );
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"12");
    let times = |atim: i64, mtim: i64, flags: i32| {
        wcall(
            &domain,
            "w_fd_filestat_set_times",
            &[
                Val::I32(fd),
                Val::I64(atim),
                Val::I64(mtim),
                Val::I32(flags),
            ],
        )
    };
    assert_eq!(times(0, 1_000_000_000_000_000_000, 4), 0, "mtim given");
    assert_eq!(call(&domain, "w_fd_filestat_get", &[fd, 500]), 0);
    let mtim = domain.call("load64", &[Val::I32(548)]).unwrap()[0].unwrap_i64();
    assert_eq!(mtim, 1_000_000_000_000_000_000);
    assert_eq!(times(0, 0, 4 | 8), EINVAL, "a time and now");
    assert_eq!(times(0, 0, 16), EINVAL, "an unknown flag");
    let advise = wcall(
        &domain,
        "w_fd_advise",
        &[Val::I32(fd), Val::I64(0), Val::I64(0), Val::I32(1)],
    );
    assert_eq!(advise, 0);
    let advise = wcall(
        &domain,
        "w_fd_advise",
        &[Val::I32(fd), Val::I64(0), Val::I64(0), Val::I32(9)],
    );
    assert_eq!(advise, EINVAL);
    assert_eq!(
        wcall(
            &domain,
            "w_fd_allocate",
            &[Val::I32(fd), Val::I64(0), Val::I64(100)]
        ),
        0
    );
    assert_eq!(std::fs::metadata(dir.join("f")).unwrap().len(), 100);
    assert_eq!(call(&domain, "w_fd_sync", &[fd]), 0);
    assert_eq!(call(&domain, "w_fd_datasync", &[fd]), 0);
    assert_eq!(call(&domain, "w_fd_sync", &[1]), EBADF, "stdio is no file");
}

#[test]
fn renumber_moves_a_file_onto_another_fd() {
    let _serial = serial();
    let dir = scratch("wasi-renumber");
    std::fs::write(dir.join("a"), b"AAAA").unwrap();
    std::fs::write(dir.join("b"), b"BBBB").unwrap();
    let domain = domain(DomainConfig::new().preopen("data", &dir));
    let baseline = domain.table().len();
    let from = open(&domain, "data/a", 1);
    let to = open(&domain, "data/b", 1);
    assert_eq!(call(&domain, "w_fd_renumber", &[from, to]), 0);
    assert_eq!(
        call(&domain, "w_fd_close", &[from]),
        EBADF,
        "from is closed"
    );
    iovec(&domain, 0, 100, 4);
    assert_eq!(call(&domain, "w_fd_read", &[to, 0, 1, 16]), 0);
    assert_eq!(peek(&domain, 100, 4), b"AAAA", "to names from's file");
    // The custody ABI's read follows the id too.
    let rewind = [Val::I32(to), Val::I64(0), Val::I32(0), Val::I32(24)];
    assert_eq!(wcall(&domain, "w_fd_seek", &rewind), 0);
    assert_eq!(call(&domain, "abi_read", &[to, 300, 4, 16]), 0);
    assert_eq!(peek(&domain, 300, 4), b"AAAA");
    assert_eq!(
        domain.table().len(),
        baseline + 1,
        "b's file released, a's handle gone"
    );
    assert_eq!(call(&domain, "w_fd_renumber", &[to, to]), 0);
    assert_eq!(call(&domain, "w_fd_renumber", &[from, to]), EBADF);
    // Onto stdout: fd 1 writes to the file now.
    let out = open(&domain, "data/out", 2 | 4);
    assert_eq!(call(&domain, "w_fd_renumber", &[out, 1]), 0);
    poke(&domain, 100, b"moved");
    iovec(&domain, 0, 100, 5);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), 0);
    assert_eq!(std::fs::read(dir.join("out")).unwrap(), b"moved");
    assert_eq!(domain.take_stdout(), b"");
    assert_eq!(call(&domain, "w_fd_close", &[out]), EBADF);
    // A pre-open moved onto another number keeps its name.
    assert_eq!(call(&domain, "w_fd_renumber", &[3, 2]), 0);
    assert_eq!(call(&domain, "w_fd_prestat_get", &[2, 0]), 0);
    assert_eq!(call(&domain, "w_fd_prestat_get", &[3, 0]), EBADF);
    domain.unload().unwrap();
}

/// A guest renumbering onto a handle the embedder shares with it would
/// replace the file behind the embedder's own fd: refused, nothing changes.
#[test]
fn renumber_never_replaces_a_file_the_embedder_shares() {
    let _serial = serial();
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let dir = scratch("wasi-renumber-shared");
    std::fs::write(dir.join("mine"), b"").unwrap();
    std::fs::write(dir.join("a"), b"AAAA").unwrap();
    let inode = |fd: std::os::fd::BorrowedFd<'_>| {
        std::fs::File::from(fd.try_clone_to_owned().unwrap())
            .metadata()
            .unwrap()
            .ino()
    };
    let fds = open_fds();
    let domain = domain(DomainConfig::new().preopen("data", &dir));
    let mine: custody_handle::SafeHandle<custody_handle::Fd> =
        std::fs::File::open(dir.join("mine")).unwrap().into();
    let mine_inode = inode(mine.acquire().unwrap().as_fd());
    let shared = domain.table().insert_handle(&mine).unwrap().raw() as i32;
    let from = open(&domain, "data/a", 1);
    assert_eq!(call(&domain, "w_fd_renumber", &[from, shared]), ENOTSUP);
    assert_eq!(
        inode(mine.acquire().unwrap().as_fd()),
        mine_inode,
        "the embedder's fd still names its own file"
    );
    // Both of the guest's fds still work; the shared one still reads `mine`.
    iovec(&domain, 0, 100, 4);
    assert_eq!(call(&domain, "w_fd_read", &[from, 0, 1, 16]), 0);
    assert_eq!(peek(&domain, 100, 4), b"AAAA");
    // The other way is fine: the shared file is duplicated, the
    // embedder's fd untouched, and the domain's id for it closed.
    let to = open(&domain, "data/a", 1);
    assert_eq!(call(&domain, "w_fd_renumber", &[shared, to]), 0);
    assert_eq!(call(&domain, "w_fd_close", &[shared]), EBADF);
    assert_eq!(inode(mine.acquire().unwrap().as_fd()), mine_inode);
    domain.unload().unwrap();
    drop(mine);
    assert_eq!(open_fds(), fds);
}

#[test]
fn closing_stdio_and_pre_opens_ends_their_numbers() {
    let _serial = serial();
    let dir = scratch("wasi-close");
    let domain = domain(DomainConfig::new().preopen("data", &dir));
    assert_eq!(call(&domain, "w_fd_close", &[1]), 0);
    iovec(&domain, 0, 100, 1);
    assert_eq!(call(&domain, "w_fd_write", &[1, 0, 1, 16]), EBADF);
    assert_eq!(call(&domain, "w_fd_close", &[1]), EBADF);
    assert_eq!(call(&domain, "w_fd_close", &[3]), 0);
    assert_eq!(call(&domain, "w_fd_prestat_get", &[3, 0]), EBADF);
    assert_eq!(call(&domain, "w_fd_close", &[99]), EBADF);
}
