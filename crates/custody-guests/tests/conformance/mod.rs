//! The WASI conformance corpus's cases and how their runs are compared.
//!
//! A [`Case`] is one run of one program of `guest/wasi/`: its arguments,
//! environment, stdin, pre-opens and the files its scratch directory starts
//! with. Each runner (`runners`: custody, wasmtime-wasi's preview 1, the
//! native build) gets a fresh scratch directory with the same contents and
//! returns an [`Outcome`]: stdout, stderr and how the program ended.
//!
//! Working directory convention, on every runner: the scratch directory is
//! pre-opened under WASI (fd 3) as `.` for the C programs (wasi-libc
//! resolves relative paths in it) and as `/` for the Go ones (Go's working
//! directory under `wasip1` is the first pre-open's name without `$PWD`),
//! and is the native child's current directory.

pub mod runners;

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the build script put the guests.
pub const GUESTS: &str = env!("CUSTODY_GUEST_DIR");

/// The corpus linked into one module, which runs the program argv[0]
/// names (guest/build.sh): one compilation for every case, where one per
/// program would cost seconds each in a debug build.
pub fn corpus() -> PathBuf {
    Path::new(GUESTS).join("wasi/corpus.wasm")
}

/// The Go guests (`guest/go`) built for `wasip1`: one module, which runs
/// the program argv[0] names, as the C corpus does.
pub fn go_guests() -> PathBuf {
    Path::new(GUESTS).join("go/guests.wasm")
}

/// Which set of guests a case's program is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guests {
    /// `guest/wasi/NAME.c`, in `corpus.wasm`.
    C,
    /// `guest/go/`, in `go/guests.wasm`.
    Go,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It exited (returned from main, or exit/proc_exit) with this status.
    Exit(i32),
    /// The WebAssembly trapped (abort(), unreachable, a runtime's refusal).
    Trap,
    /// The native program was killed by this signal.
    Signal(i32),
}

/// What a run printed, and how it ended.
#[derive(Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: Status,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "status {:?}", self.status)?;
        for (stream, bytes) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            writeln!(f, "--- {stream}")?;
            for line in String::from_utf8_lossy(bytes).lines() {
                // stdio.c's 5000-byte line would drown the rest.
                match line.char_indices().nth(120) {
                    Some((cut, _)) => writeln!(f, "{}...", &line[..cut])?,
                    None => writeln!(f, "{line}")?,
                }
            }
        }
        Ok(())
    }
}

/// One run of a corpus program.
#[derive(Clone)]
pub struct Case {
    /// The program: `guest/wasi/NAME.c`, or a Go guest's name.
    pub program: &'static str,
    /// Which set of guests `program` is in.
    pub guests: Guests,
    /// The arguments after argv[0] (which is `program` on every runner).
    pub args: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// What stdin holds (`None`: null, reads see end of file at once).
    pub stdin: Option<Vec<u8>>,
    /// The pre-opens after `.`, as (guest name, directory under the
    /// scratch directory).
    pub preopens: Vec<(&'static str, &'static str)>,
    /// Fills a fresh scratch directory.
    pub setup: fn(&Path),
}

impl Case {
    /// `program` with no arguments, environment or stdin, and an empty
    /// scratch directory.
    pub fn new(program: &'static str) -> Self {
        Case {
            program,
            guests: Guests::C,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            preopens: Vec::new(),
            setup: |_| {},
        }
    }

    /// The Go guest `program` (`guest/go`), otherwise as [`Case::new`].
    pub fn go(program: &'static str) -> Self {
        Case {
            guests: Guests::Go,
            ..Case::new(program)
        }
    }

    /// The name the scratch directory is pre-opened under (see the module
    /// doc).
    pub fn root(&self) -> &'static str {
        match self.guests {
            Guests::C => ".",
            Guests::Go => "/",
        }
    }

    /// With these arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// With one more environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// With stdin holding `bytes`.
    pub fn stdin(mut self, bytes: &[u8]) -> Self {
        self.stdin = Some(bytes.to_vec());
        self
    }

    /// With one more pre-open: `guest` names `dir` under the scratch
    /// directory.
    pub fn preopen(mut self, guest: &'static str, dir: &'static str) -> Self {
        self.preopens.push((guest, dir));
        self
    }

    /// With a scratch directory filled by `setup`.
    pub fn setup(mut self, setup: fn(&Path)) -> Self {
        self.setup = setup;
        self
    }

    /// argv as every runner passes it.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// A fresh scratch directory for one run, filled by `setup`.
    pub fn scratch(&self, runner: &str) -> PathBuf {
        let dir = custody_testkit::scratch(&format!("wasi-{}-{runner}", self.program));
        (self.setup)(&dir);
        dir
    }

    /// Where `program`'s native build is.
    pub fn native(&self) -> PathBuf {
        match self.guests {
            Guests::C => Path::new(GUESTS).join(format!("native/{}", self.program)),
            Guests::Go => Path::new(GUESTS).join("go/guests"),
        }
    }

    /// A short name for messages: the program and its arguments.
    pub fn label(&self) -> String {
        self.argv().join(" ")
    }
}

/// A documented difference between custody and wasmtime-wasi: where
/// wasmtime's run shows `wasmtime`, custody's shows `custody`.
pub enum Difference {
    /// One stdout line.
    Line {
        /// wasmtime-wasi's line.
        wasmtime: &'static str,
        /// custody's line (or lines: custody may say more).
        custody: &'static str,
    },
    /// How the run ended.
    Status {
        /// How it ended under wasmtime-wasi.
        wasmtime: Status,
        /// How it ended under custody.
        custody: Status,
    },
}

/// What custody's run must be, given wasmtime's and the documented
/// differences (each of which must apply: a difference that no longer
/// shows is stale, and fails).
pub fn expected_of_custody(case: &Case, wasmtime: &Outcome, differences: &[Difference]) -> Outcome {
    let mut expected = wasmtime.clone();
    for difference in differences {
        match *difference {
            Difference::Line { wasmtime, custody } => {
                let mut found = false;
                let mut stdout = Vec::with_capacity(expected.stdout.len());
                for line in expected.stdout.split_inclusive(|&b| b == b'\n') {
                    if line.strip_suffix(b"\n") == Some(wasmtime.as_bytes()) {
                        found = true;
                        stdout.extend_from_slice(custody.as_bytes());
                        stdout.push(b'\n');
                    } else {
                        stdout.extend_from_slice(line);
                    }
                }
                assert!(
                    found,
                    "{}: the documented line {wasmtime:?} is not in wasmtime-wasi's output",
                    case.label()
                );
                expected.stdout = stdout;
            }
            Difference::Status { wasmtime, custody } => {
                assert_eq!(
                    expected.status,
                    wasmtime,
                    "{}: the documented status is not wasmtime-wasi's",
                    case.label()
                );
                expected.status = custody;
            }
        }
    }
    expected
}

/// Drops the lines whose answer is host-specific by design (`[wasi] `,
/// `[native] `: see guest/wasi/common.h) for the native comparison.
pub fn portable(outcome: &Outcome) -> Outcome {
    let keep = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| !line.starts_with(b"[wasi] ") && !line.starts_with(b"[native] "))
            .flatten()
            .copied()
            .collect()
    };
    Outcome {
        stdout: keep(&outcome.stdout),
        stderr: keep(&outcome.stderr),
        status: outcome.status,
    }
}

/// Panics unless `got` (from `who`) equals `want` (from `reference`),
/// naming the first line that differs.
#[track_caller]
pub fn assert_same(case: &Case, who: &str, got: &Outcome, reference: &str, want: &Outcome) {
    if got == want {
        return;
    }
    let mut why = String::new();
    for (stream, g, w) in [
        ("stdout", &got.stdout, &want.stdout),
        ("stderr", &got.stderr, &want.stderr),
    ] {
        if g == w {
            continue;
        }
        let g = String::from_utf8_lossy(g);
        let w = String::from_utf8_lossy(w);
        let (gl, wl): (Vec<&str>, Vec<&str>) = (g.lines().collect(), w.lines().collect());
        // With as many lines on both sides, every line that differs (each
        // may be a finding of its own); else the first, where they part.
        let lines: Vec<usize> = if gl.len() == wl.len() {
            (0..gl.len()).filter(|&i| gl[i] != wl[i]).collect()
        } else {
            vec![gl.iter().zip(&wl).take_while(|(a, b)| a == b).count()]
        };
        for at in lines {
            why += &format!(
                "{stream} line {}: {who} {:?}, {reference} {:?}\n",
                at + 1,
                gl.get(at).copied().unwrap_or("<end>"),
                wl.get(at).copied().unwrap_or("<end>"),
            );
        }
    }
    if got.status != want.status {
        why += &format!(
            "status: {who} {:?}, {reference} {:?}\n",
            got.status, want.status
        );
    }
    panic!(
        "{}: {who} differs from {reference}:\n{why}\n=== {who}\n{got:?}\n=== {reference}\n{want:?}",
        case.label()
    );
}
