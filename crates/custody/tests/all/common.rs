//! What the CLI tests share: running the built `custody` and reading its
//! output.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub fn custody(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Writes `text` to a file `name` in a directory of its own: modules of
/// this binary run at once and some pick the same names.
pub fn scratch_module(name: &str, text: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir()
        .join(format!("custody-cli-{}", std::process::id()))
        .join(N.fetch_add(1, Ordering::Relaxed).to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The error: one line, the last on stderr (guest log lines and diagnostic
/// reports such as `callAborted` may precede it).
pub fn error_line(output: &Output) -> String {
    let text = stderr(output);
    let last = text.lines().last().unwrap_or_default();
    assert!(last.starts_with("custody: "), "{text}");
    last.to_string()
}

/// Asserts that the run failed with exit `status` and that its error line
/// says `needle`.
pub fn assert_fails_with(output: &Output, status: i32, needle: &str) {
    assert_eq!(output.status.code(), Some(status), "{}", stderr(output));
    assert!(error_line(output).contains(needle), "{}", stderr(output));
}

pub use crate::serve_process::{Server, exit_within, signal, terminate};

/// One HTTP/1.0 request (so the body comes unchunked, ended by the
/// close), with the query `q=1`; the whole response.
pub fn http(url: &str, method: &str, body: &str) -> String {
    request(&format!("{url}?q=1"), method, &[], body)
}

/// [`http`], for a server that may not be there.
pub fn try_http(url: &str, method: &str, body: &str) -> std::io::Result<String> {
    try_request(&format!("{url}?q=1"), method, &[], body)
}

/// One HTTP/1.0 request to `url` as it is, with `headers`; the whole
/// response.
pub fn request(url: &str, method: &str, headers: &[(&str, &str)], body: &str) -> String {
    try_request(url, method, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// [`request`], for a server that may not be there.
pub fn try_request(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<String> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let headers: String = (headers.iter())
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}
