//! A request's stdio on the server's side: the guest's stdin and stdout
//! as in-process pipes (custody-wasi's [`Stdio::pipe_in`] and
//! [`Stdio::pipe_out`]; for a custody-ABI plugin, its `request` and
//! `response` handles, the same pipes) seen as tokio I/O, and its stderr,
//! captured and logged a line at a time when the call ends.
//!
//! In-process pipes cost a lock per transfer and no fd (OS pipes cost three
//! `pipe2`, their duplicates, reactor registrations and ten `close`s a
//! request); they stream and bound memory as OS pipes do.
//!
//! [`Stdio::pipe_in`]: custody_wasi::Stdio::pipe_in
//! [`Stdio::pipe_out`]: custody_wasi::Stdio::pipe_out

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use custody_handle::diagnostics::escape_control;
use custody_wasi::{PipeReader, PipeWriter};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::abort::Abort;
use crate::request_span::RequestId;

/// The room of a request's stdin and stdout pipes.
pub(crate) const PIPE_CAPACITY: usize = custody_wasi::PIPE_CAPACITY;
/// The longest stderr line logged whole; a longer one is logged in parts.
const MAX_LOG_LINE: usize = 4 << 10;

/// The guest's stdin, written by the server.
pub(crate) struct GuestStdin(pub(crate) PipeWriter);

impl AsyncWrite for GuestStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The guest's stdout, read by the server.
pub(crate) struct GuestStdout(pub(crate) PipeReader);

impl AsyncRead for GuestStdout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.0.poll_read(cx, buf.initialize_unfilled()) {
            Poll::Ready(n) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Everything left in a pipe out of a guest whose side is closed (a call
/// that ended): the pipe's buffer itself. A side still open (a pooled
/// domain's) is read to its end, every read at once, in small steps: a
/// hello is tens of bytes, not a zeroed 64 KiB buffer.
pub(crate) async fn read_whole(reader: &PipeReader) -> Vec<u8> {
    if let Some(output) = reader.take_closed() {
        return output;
    }
    let mut output = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            0 => return output,
            n => output.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Logs a domain's captured stderr, a line at a time (a long one in parts
/// of [`MAX_LOG_LINE`] bytes), tagged with the plugin and the request.
pub(crate) fn log_captured(stderr: &[u8], plugin: &str, request_id: RequestId) {
    let lines = stderr.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    for part in lines.flat_map(|line| line.chunks(MAX_LOG_LINE)) {
        let text = String::from_utf8_lossy(part);
        tracing::info!(
            target: "custody::serve::stderr",
            plugin, id = %request_id, "{}", escape_control(&text)
        );
    }
}

/// Writes the request body into the guest's stdin as it arrives; over
/// `max_body`, marks it and stops the guest. Closing stdin (the end of the
/// body) is the guest's end of file. A guest that stops reading (or ends)
/// leaves the rest of the body unwanted: it is read and dropped (still
/// bounded by `max_body`), so the client can finish sending and read the
/// response on a connection that stays usable.
pub(crate) async fn feed_stdin(
    mut body: Incoming,
    stdin: impl AsyncWrite + Unpin,
    max_body: usize,
    too_large: Arc<AtomicBool>,
    domain: Abort,
) {
    let mut total = 0usize;
    let mut stdin = Some(stdin);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > max_body {
            too_large.store(true, Ordering::Release);
            domain.abort();
            return;
        }
        if let Some(pipe) = &mut stdin
            && pipe.write_all(&data).await.is_err()
        {
            stdin = None;
        }
    }
}
