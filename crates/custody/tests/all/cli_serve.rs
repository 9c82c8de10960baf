//! `custody serve`: with no configuration it serves the bundled examples
//! and prints one line per route; each printed URL answers; a
//! configuration's error names the file and the key.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The server process, killed (by its own handle) when the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 request (so the body comes unchunked, ended by the
/// close); the whole response.
fn http(url: &str, method: &str, body: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path}?q=1 HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serve_without_arguments_answers_its_printed_urls() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(2)
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let urls: Vec<&str> = lines
        .iter()
        .map(|l| l.strip_prefix("GET ").unwrap())
        .collect();
    assert!(
        urls[0].ends_with("/hello") && urls[1].ends_with("/echo"),
        "{urls:?}"
    );
    assert!(
        !urls[0].contains(":0/"),
        "the chosen port is printed: {urls:?}"
    );
    let hello = http(urls[0], "GET", "");
    assert!(hello.starts_with("HTTP/1.0 200"), "{hello}");
    assert!(
        hello.contains("custody-plugin-version: ") && hello.contains("hello, world"),
        "{hello}"
    );
    let echo = http(urls[1], "POST", "the body");
    assert!(echo.starts_with("HTTP/1.0 200"), "{echo}");
    assert!(
        echo.contains("REQUEST_METHOD=POST") && echo.contains("QUERY_STRING=q=1"),
        "{echo}"
    );
    assert!(echo.contains("--- body ---\nthe body"), "{echo}");
}

#[test]
fn a_bad_configuration_is_a_usage_error_naming_the_file_and_key() {
    let dir = std::env::temp_dir().join(format!("custody-cli-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("custody.toml");
    std::fs::write(
        &file,
        "[[plugin]]\nname = \"p\"\nroute = \"/p\"\nmodule = \"p.wasm\"\ntypo = 1\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("custody.toml") && stderr.contains("typo"),
        "{stderr}"
    );
}
