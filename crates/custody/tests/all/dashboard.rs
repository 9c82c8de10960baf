//! The dashboard (`/admin/`) in a real browser: Debian's `chromium`,
//! headless, against `custody serve` with a plugin whose unload is
//! blocked (its request waits in `fd_read`, then the domain is unloaded
//! cooperatively: `Unloading`, one `Call` root) and a second request
//! stuck the same way. The page's script must have drawn, through the
//! token's cookie, the plugin, the domain's state, the root's host call
//! and the stuck request's id; a screenshot is kept as
//! `target/dashboard.png` (CI's artifact).
//!
//! Without chromium the build script sets `cfg(no_chromium)` and the test
//! is ignored with the reason, never passed; with
//! `CUSTODY_REQUIRE_GUESTS=1` (CI, which installs it) it runs and fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cli_admin::{TOKEN, admin_ok, admin_server, blocked_requests, stuck_request};

/// How long one browser run may take.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);
/// The least a 1280x900 screenshot of the drawn page weighs (a blank one
/// is a few KB).
const MIN_SCREENSHOT_BYTES: u64 = 20 * 1024;

/// The browser the build script found.
fn chromium() -> PathBuf {
    match option_env!("CUSTODY_CHROMIUM") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "chromium is not installed (Debian's `chromium`: apt-get install chromium, as \
             .ci/run does; or set CHROMIUM to a browser) and CUSTODY_REQUIRE_GUESTS asks for it"
        ),
    }
}

/// Runs headless chromium on `url` with `flags`, in a profile of its own
/// under `scratch`; its output (its stderr, noisy without a session bus,
/// shown only if it fails).
fn browse(scratch: &Path, url: &str, flags: &[&str]) -> Output {
    let profile = scratch.join(format!("profile-{}", flags.len()));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(flags)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium().display()));
    let begun = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if begun.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "chromium ran past {BROWSER_LIMIT:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "chromium {flags:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The text of `<section id="ID">` in `dom`.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id}: {dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</section>").unwrap_or(rest.len())]
}

/// Where the screenshot is kept: `target/dashboard.png` (the directory
/// above the profile's, where the built `custody` is).
fn screenshot_path() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_custody"));
    binary
        .parent()
        .and_then(Path::parent)
        .expect("the binary is in target/PROFILE")
        .join("dashboard.png")
}

#[test]
#[cfg_attr(
    no_chromium,
    ignore = "chromium is not installed (Debian's `chromium`: apt-get install chromium; .ci/run \
              installs it)"
)]
fn the_dashboard_in_headless_chromium_shows_the_blocked_unload_and_the_stuck_request() {
    let server = admin_server("dashboard");
    // The first request's domain: unloading, held by its call in fd_read.
    let _held = stuck_request(&server);
    let (held_id, held_domain) = blocked_requests(&server, 1).remove(0);
    let held = held_domain.to_string();
    let unloading = admin_ok(&server, &["unload", &held, "--wait", "50ms"]);
    assert!(unloading.contains("is unloading"), "{unloading}");
    // The second: stuck, its domain running.
    let _stuck = stuck_request(&server);
    let (stuck_id, stuck_domain) = (blocked_requests(&server, 2).into_iter())
        .find(|(id, _)| *id != held_id)
        .unwrap();

    let scratch = server.dir.join("chromium");
    let page = format!("{}/admin/?token={TOKEN}", server.admin);
    // The virtual time budget lets the page's script fetch and draw (it
    // refreshes every second) before the DOM is dumped.
    let dumped = browse(
        &scratch,
        &page,
        &["--virtual-time-budget=5000", "--dump-dom"],
    );
    let dom = String::from_utf8_lossy(&dumped.stdout);
    let stderr = String::from_utf8_lossy(&dumped.stderr);
    let context = format!("{dom}\n--- chromium's stderr ---\n{stderr}");
    let status = section(&dom, "plugins");
    assert!(status.contains("<strong>read</strong>"), "{context}");
    assert!(
        dom.contains("<span id=\"status\" class=\"\">updated "),
        "the page says it read every endpoint: {context}"
    );
    let domains = section(&dom, "domains");
    let held_row = (domains.split("<tr>"))
        .find(|row| row.contains(&format!("<span class=\"id\">{held}</span>")))
        .unwrap_or_else(|| panic!("no row for domain {held}: {context}"));
    assert!(
        held_row.contains(">unloading</span>"),
        "{held_row}\n{context}"
    );
    let unloads = section(&dom, "unloads");
    assert!(
        unloads.contains(&format!("<span class=\"id\">{held}</span>"))
            && unloads.contains("blocked in fd_read")
            && unloads.contains("_start"),
        "the root's host call and stack: {context}"
    );
    let requests = section(&dom, "requests");
    let stuck_row = (requests.split("<tr>"))
        .find(|row| row.contains(&stuck_id))
        .unwrap_or_else(|| panic!("no row for request {stuck_id}: {context}"));
    assert!(
        stuck_row.contains(&format!("<span class=\"id\">{stuck_domain}</span>"))
            && stuck_row.contains("fd_read"),
        "{stuck_row}\n{context}"
    );

    let png = screenshot_path();
    let _ = std::fs::remove_file(&png);
    browse(
        &scratch,
        &page,
        &[
            "--virtual-time-budget=5000",
            "--window-size=1280,900",
            &format!("--screenshot={}", png.display()),
        ],
    );
    let size = std::fs::metadata(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()))
        .len();
    let mut header = [0u8; 8];
    std::io::Read::read_exact(&mut std::fs::File::open(&png).unwrap(), &mut header).unwrap();
    assert_eq!(&header, b"\x89PNG\r\n\x1a\n", "{}", png.display());
    assert!(
        size > MIN_SCREENSHOT_BYTES,
        "{} is {size} bytes: nothing drawn?",
        png.display()
    );
    println!(
        "dashboard screenshot (CI artifact): {} ({size} bytes)",
        png.display()
    );
}
