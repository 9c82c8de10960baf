//! The `custody_http` functions: the request head read out, the response
//! head shaped, each under the custody ABI's contract (every range and out
//! slot checked whole before anything is copied or changed: `E_FAULT`; a
//! negative length, a bad status or header, or no request in flight:
//! `E_INVAL`; past the head's bounds: `E_QUOTA`).

use std::borrow::Cow;

use custody_host::extension::{AbiError, AbiResult, HostCall, length, pointer};
use http::header::HeaderName;

use crate::HttpState;
use crate::exchange::{Exchange, Refused, RequestHead};

/// Longest header name a plugin may ask for or set.
const MAX_NAME: u32 = 256;
/// Longest header value a plugin may set.
const MAX_VALUE: u32 = 8192;

fn exchange(call: &mut HostCall<'_, '_>) -> Result<std::sync::Arc<Exchange>, AbiError> {
    call.ctx()
        .extension::<HttpState>()
        .map(|state| std::sync::Arc::clone(&state.exchange))
        .ok_or(AbiError::Inval)
}

impl From<Refused> for AbiError {
    fn from(refused: Refused) -> AbiError {
        match refused {
            Refused::NotNow | Refused::Invalid => AbiError::Inval,
            Refused::TooMany => AbiError::Quota,
        }
    }
}

/// Copies what `read` takes from the request into `buf` (at most
/// `buf_len` bytes) and writes its whole length at `out_len`: a guest whose
/// buffer was short asks again with a larger one. Returns what `read`
/// returned beside the bytes (whether a header was present).
fn copy_out(
    call: &mut HostCall<'_, '_>,
    buf: i32,
    buf_len: i32,
    out_len: i32,
    read: impl FnOnce(&RequestHead) -> (i32, Cow<'_, [u8]>),
) -> AbiResult {
    let len = length(buf_len)?;
    let exchange = exchange(call)?;
    let (mut memory, _) = call.split();
    memory.range(pointer(buf), len)?;
    let out = memory.out_slot(pointer(out_len))?;
    let copied = exchange.with_request(|request| {
        let (result, bytes) = read(request);
        let n = bytes.len().min(len as usize);
        memory.write(pointer(buf), &bytes[..n])?;
        memory.put_i32(out, i32::try_from(bytes.len()).unwrap_or(i32::MAX));
        Ok(result)
    });
    copied.ok_or(AbiError::Inval)?
}

/// A guest's length, at most `max` (else `E_INVAL`).
fn bounded(len: i32, max: u32) -> Result<u32, AbiError> {
    let len = length(len)?;
    if len > max {
        return Err(AbiError::Inval);
    }
    Ok(len)
}

/// Reads `len` bytes at `ptr`, at most `max` (else `E_INVAL`).
fn read_in(call: &mut HostCall<'_, '_>, ptr: i32, len: i32, max: u32) -> Result<Vec<u8>, AbiError> {
    let len = bounded(len, max)?;
    let (memory, _) = call.split();
    Ok(memory.read(pointer(ptr), len)?)
}

pub(crate) fn method(
    call: &mut HostCall<'_, '_>,
    buf: i32,
    buf_len: i32,
    out_len: i32,
) -> AbiResult {
    copy_out(call, buf, buf_len, out_len, |r| {
        (0, Cow::Borrowed(r.method.as_str().as_bytes()))
    })
}

pub(crate) fn uri(call: &mut HostCall<'_, '_>, buf: i32, buf_len: i32, out_len: i32) -> AbiResult {
    // The target as sent: an origin-form request's path and query.
    copy_out(call, buf, buf_len, out_len, |r| {
        let target = r
            .uri
            .path_and_query()
            .map_or(r.uri.path(), |pq| pq.as_str());
        (0, Cow::Borrowed(target.as_bytes()))
    })
}

pub(crate) fn header(
    call: &mut HostCall<'_, '_>,
    name_ptr: i32,
    name_len: i32,
    buf: i32,
    buf_len: i32,
    out_len: i32,
) -> AbiResult {
    let name = read_in(call, name_ptr, name_len, MAX_NAME)?;
    copy_out(call, buf, buf_len, out_len, |r| {
        // A name that is no header name names no header.
        let mut values = HeaderName::from_bytes(&name)
            .ok()
            .map(|name| r.headers.get_all(name).into_iter());
        let Some(first) = values.as_mut().and_then(Iterator::next) else {
            return (0, Cow::Borrowed(&[][..]));
        };
        let mut joined = Cow::Borrowed(first.as_bytes());
        for value in values.into_iter().flatten() {
            let joined = joined.to_mut();
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value.as_bytes());
        }
        (1, joined)
    })
}

pub(crate) fn header_names(
    call: &mut HostCall<'_, '_>,
    buf: i32,
    buf_len: i32,
    out_len: i32,
) -> AbiResult {
    copy_out(call, buf, buf_len, out_len, |r| {
        let names: Vec<&str> = r.headers.keys().map(HeaderName::as_str).collect();
        (0, Cow::Owned(names.join("\n").into_bytes()))
    })
}

pub(crate) fn set_status(call: &mut HostCall<'_, '_>, status: i32) -> AbiResult {
    exchange(call)?.set_status(status)?;
    Ok(0)
}

fn header_out(
    call: &mut HostCall<'_, '_>,
    (name_ptr, name_len): (i32, i32),
    (value_ptr, value_len): (i32, i32),
    append: bool,
) -> AbiResult {
    // The name and the value read in place (the exchange copies what it
    // keeps), checked in the order a copy of each would be.
    let name_len = bounded(name_len, MAX_NAME)?;
    let (memory, ctx) = call.split();
    memory.read_with(pointer(name_ptr), name_len, |name| {
        let value_len = bounded(value_len, MAX_VALUE)?;
        memory.read_with(pointer(value_ptr), value_len, |value| {
            let state = ctx.extension::<HttpState>().ok_or(AbiError::Inval)?;
            state.exchange.set_header(name, value, append)?;
            Ok(0)
        })?
    })?
}

pub(crate) fn set_header(
    call: &mut HostCall<'_, '_>,
    name_ptr: i32,
    name_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> AbiResult {
    header_out(call, (name_ptr, name_len), (value_ptr, value_len), false)
}

pub(crate) fn append_header(
    call: &mut HostCall<'_, '_>,
    name_ptr: i32,
    name_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> AbiResult {
    header_out(call, (name_ptr, name_len), (value_ptr, value_len), true)
}
