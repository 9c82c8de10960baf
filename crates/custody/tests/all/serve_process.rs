//! A `custody serve` child process, shared by the CLI tests
//! (`cli_serve.rs`) and the chaos run (`tests/chaos`): spawned with its
//! stdout and stderr piped, killed by its own handle when dropped,
//! stopped with SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A process of the test (a server, a load balancer, a load generator),
/// killed (by its own handle) when the test ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `custody serve --listen 127.0.0.1:0 --config FILE FLAGS`, its stdout
/// and stderr piped (the route lines come on stdout).
pub fn spawn_serve(file: &Path, flags: &[&str]) -> Server {
    spawn_serve_with_env(file, flags, &[])
}

/// [`spawn_serve`], with these environment variables set for it.
pub fn spawn_serve_with_env(file: &Path, flags: &[&str], env: &[(&str, &str)]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(file)
        .args(flags)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Server(child)
}

/// Sends `signal` to the process.
pub fn signal(server: &Server, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(server.0.id()).unwrap();
    // SAFETY: kill(2) takes plain integers; `pid` is our own child, not
    // yet reaped (its `Child` is alive), so the number names no other
    // process.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Sends SIGTERM to the process.
pub fn terminate(server: &Server) {
    signal(server, libc::SIGTERM);
}

/// Waits for the process to end, at most `within`; its exit code.
pub fn exit_within(server: &mut Server, within: Duration) -> Option<i32> {
    let begun = std::time::Instant::now();
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            return status.code();
        }
        assert!(begun.elapsed() < within, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
