//! `/admin/diagnostics`: the server's recent diagnostics (the bounded
//! ring of `recent_diagnostics`) as JSON, or with `?follow` those pushed
//! from then on as server-sent events (`text/event-stream`: an `id:` line,
//! the entry's `seq`, and one `data:` line of JSON per event). A stream
//! runs no task of its own: it is the response's body, polled by the
//! connection, so it ends when its client goes away (the body is dropped)
//! or when the admin listener stops.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::json;
use crate::body::Body;
use crate::recent_diagnostics::RECENT_DIAGNOSTICS;
use crate::server::ServerState;

/// Whether `query` asks to follow (`follow`, `follow=1`, `follow=true`).
fn follows(query: &str) -> bool {
    (query.split('&')).any(|pair| matches!(pair, "follow" | "follow=1" | "follow=true"))
}

/// `GET /admin/diagnostics[?follow]`.
pub(super) fn answer(
    state: &ServerState,
    query: &str,
    stopping: watch::Receiver<bool>,
) -> Response<Body> {
    if follows(query) {
        return follow(state, stopping);
    }
    let (entries, dropped) = state.recent.recent();
    let entries: Vec<&Value> = entries.iter().map(|entry| &**entry).collect();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "capacity": RECENT_DIAGNOSTICS,
            "dropped": dropped,
            "diagnostics": entries,
        }),
    )
}

/// The event stream: subscribed before the head is answered, so whatever
/// is pushed once the client has the head is sent.
fn follow(state: &ServerState, stopping: watch::Receiver<bool>) -> Response<Body> {
    let follower = Follower {
        events: state.recent.follow(),
        stopping,
    };
    let body = EventStream {
        next: Mutex::new(Some(Box::pin(follower.next()))),
    };
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// One server-sent event for an entry.
fn event(entry: &Value) -> Bytes {
    // serde_json escapes every newline inside strings: one `data:` line.
    let seq = entry.get("seq").and_then(Value::as_u64).unwrap_or(0);
    Bytes::from(format!("id: {seq}\ndata: {entry}\n\n"))
}

/// What a stream waits on: the ring's new entries and the listener's stop.
struct Follower {
    events: broadcast::Receiver<Arc<Value>>,
    stopping: watch::Receiver<bool>,
}

/// The next event and the follower back, or `None` at the end.
type Next = Pin<Box<dyn Future<Output = Option<(Bytes, Follower)>> + Send>>;

impl Follower {
    async fn next(mut self) -> Option<(Bytes, Follower)> {
        let frame = tokio::select! {
            received = self.events.recv() => match received {
                Ok(entry) => event(&entry),
                // Too slow for the ring: told how many it missed, and on.
                Err(broadcast::error::RecvError::Lagged(missed)) => Bytes::from(format!(
                    "event: lagged\ndata: {{\"missed\":{missed}}}\n\n"
                )),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            // Stopping, or the listener is gone (its sender dropped).
            _ = self.stopping.wait_for(|stopping| *stopping) => return None,
        };
        Some((frame, self))
    }
}

/// The response body of a stream: one pending `next` at a time. The
/// mutex makes it `Sync` as every body is (it is only ever taken through
/// `&mut`, never locked).
struct EventStream {
    next: Mutex<Option<Next>>,
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let slot = (self.get_mut().next)
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(next) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        match next.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                *slot = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some((frame, follower))) => {
                *slot = Some(Box::pin(follower.next()));
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        (self.next.lock().unwrap_or_else(PoisonError::into_inner)).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::follows;

    #[test]
    fn follow_is_asked_by_the_query() {
        for yes in ["follow", "follow=1", "a=b&follow", "follow=true"] {
            assert!(follows(yes), "{yes}");
        }
        for no in ["", "follow=0", "follower", "x=follow"] {
            assert!(!follows(no), "{no}");
        }
    }
}
