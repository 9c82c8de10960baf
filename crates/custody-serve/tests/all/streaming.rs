//! Bodies stream both ways: a 1 GiB upload to the bundled WAGI echo (and
//! to a custody-ABI echo) passes through the server (into the guest's
//! stdin or `request`, out of its stdout or `response`, back to the
//! client) with the server's memory bounded: the process's peak RSS grows
//! by far less than the body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::*;

/// The upload: `CHUNKS` frames of `CHUNK` bytes, made as they are sent.
const CHUNK: usize = 64 << 10;
const CHUNKS: usize = 16 << 10; // 1 GiB
/// What the server may keep beyond its baseline while it streams it.
const RSS_BOUND: u64 = 64 << 20;

/// A request body of `left` chunks, never held whole.
struct Upload {
    chunk: Bytes,
    left: usize,
}

impl Body for Upload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

/// The process's peak RSS (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    proc_status_bytes("VmHWM")
}

#[test]
fn a_1_gib_upload_streams_through_the_echo_with_the_server_s_memory_bounded() {
    serial_runtime(async {
        let echo = include_str!("../../plugins/echo.wat");
        let toml = r#"
        [[plugin]]
        name = "echo"
        route = "/echo"
        module = "echo.wat"
        max_body = "2GiB"
        max_response = "2GiB"
        request_timeout = "600s"
        "#;
        let server = TestServer::start(toml, &[("echo.wat", echo)]).await;
        upload_1_gib(&server, b"--- body ---\n").await;
    });
}

/// The same through a custody-ABI plugin: its `request` and `response`
/// handles are in-process pipes too.
#[test]
fn a_1_gib_upload_streams_through_the_custody_abi_echo_with_the_server_s_memory_bounded() {
    serial_runtime(async {
        let echo = crate::custody::plugin("");
        let toml = r#"
        [[plugin]]
        name = "echo"
        route = "/echo"
        module = "echo.wat"
        interface = "custody"
        max_body = "2GiB"
        max_response = "2GiB"
        request_timeout = "600s"
        "#;
        let server = TestServer::start(toml, &[("echo.wat", &echo)]).await;
        // The custody echo answers the URI, a newline, then the body.
        upload_1_gib(&server, b"/echo\n").await;
    });
}

/// Uploads 1 GiB to `/echo` on `server` and checks it all came back after
/// `head_end` (the echo's own lines before the body), with the process's
/// peak RSS grown by less than [`RSS_BOUND`].
async fn upload_1_gib(server: &TestServer, head_end: &[u8]) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Upload>();
    // Resets the peak to the RSS now (Linux: clear_refs 5).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = peak_rss();
    let request = hyper::Request::post(server.url("/echo"))
        .body(Upload {
            chunk: Bytes::from(vec![b'u'; CHUNK]),
            left: CHUNKS,
        })
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let mut body = response.into_body();
    let (mut received, mut past_head) = (0u64, false);
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap_or_default();
        if past_head {
            received += data.len() as u64;
        } else if let Some(at) = find(&data, head_end) {
            past_head = true;
            received += (data.len() - at - head_end.len()) as u64;
        }
    }
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(
        received,
        (CHUNK * CHUNKS) as u64,
        "the whole body came back"
    );
    assert!(
        grown < RSS_BOUND,
        "peak RSS grew by {} MiB streaming 1 GiB (bound {} MiB)",
        grown >> 20,
        RSS_BOUND >> 20
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
