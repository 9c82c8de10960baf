//! The HTTP ABI of custody's plugin server (`custody serve`): the import
//! module `custody_http`, a custody-host extension ([`Http`]) beside the
//! `custody` ABI and WASI.
//!
//! A plugin exports `handle(request: i32, response: i32) -> i32`. The two
//! arguments are handles of its domain's table: the request body, read with
//! the `custody` ABI's `read`, and the response body, written with `write`,
//! both streaming. The head goes through the functions here, all in the
//! `Http` category: the method, the URI, a header by name, the header names;
//! the status and the response headers, which may change until the server
//! commits the head (when the first body bytes arrive, or the call ends).
//! The C declarations are in `guest/include/custody.h`
//! (`CUSTODY_HTTP_IMPORT_`); a test keeps them and the catalogue in step.
//!
//! The server gives each domain's request through its [`Exchange`]
//! (`domain.extension::<Exchange>()`): [`Exchange::begin`] before the
//! call, [`Exchange::commit`] to send the head, [`Exchange::end`] after.
//!
//! # Module map
//! Bottom to top.
//!
//! | module | owns |
//! | --- | --- |
//! | `exchange` | [`Exchange`]: the request head, the response head and its commit, bounded |
//! | `functions` | the handlers, under the custody ABI's contract |
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod exchange;
mod functions;

use std::error::Error;
use std::sync::Arc;

use custody_host::Category;
use custody_host::extension::{
    self, AbiError, AbiType, DomainCtx, DomainSetup, Extension, ExtensionState, HostFunction,
    StoreState,
};
use wasmtime::Caller;

pub use exchange::{Exchange, MAX_HEADER_BYTES, MAX_HEADERS, RequestHead, ResponseHead};

/// The import module name.
pub const MODULE: &str = "custody_http";

/// The HTTP ABI as a host extension: `Host::builder(policy).extension(Http)`.
/// Every domain of the host gets an [`Exchange`], empty until the server
/// begins a request in it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Http;

/// The store slot: the domain's exchange, shared with the server.
pub(crate) struct HttpState {
    pub(crate) exchange: Arc<Exchange>,
}

impl StoreState for HttpState {
    /// A recycled domain keeps its exchange (the server ends the request
    /// whose call failed).
    fn renew(&mut self) -> Box<dyn StoreState> {
        Box::new(HttpState {
            exchange: Arc::clone(&self.exchange),
        })
    }
}

impl Extension for Http {
    fn module(&self) -> &'static str {
        MODULE
    }

    fn functions(&self) -> &'static [HostFunction] {
        FUNCTIONS
    }

    fn new_domain(
        &self,
        _setup: &DomainSetup<'_>,
    ) -> Result<ExtensionState, Box<dyn Error + Send + Sync>> {
        let exchange = Arc::new(Exchange::default());
        Ok(ExtensionState::store(HttpState {
            exchange: Arc::clone(&exchange),
        })
        .with_shared(exchange))
    }
}

/// Declares the module: one entry per function, in the order of
/// `custody.h`.
macro_rules! http_abi {
    ($(
        $name:ident($($param:ident),*) $summary:literal
            errors [$($error:ident),*]
            => $handler:path;
    )*) => {
        /// Every function of the module, in the order of `custody.h`.
        pub const FUNCTIONS: &[HostFunction] = &[$(
            HostFunction {
                module: MODULE,
                name: stringify!($name),
                params: &[$((stringify!($param), AbiType::I32)),*],
                results: &[AbiType::I32],
                categories: &[Category::Http],
                errors: &[$(AbiError::$error),*],
                summary: $summary,
                link: |linker| {
                    linker.func_wrap(
                        MODULE,
                        stringify!($name),
                        |mut caller: Caller<'_, DomainCtx>, $($param: i32),*| {
                            extension::enter(&mut caller, stringify!($name), |call| $handler(call, $($param),*))
                        },
                    )?;
                    Ok(())
                },
            },
        )*];
    };
}

http_abi! {
    method(buf_ptr, buf_len, out_len_ptr) "the request's method"
        errors [Inval, Fault, Aborted]
        => functions::method;
    uri(buf_ptr, buf_len, out_len_ptr) "the request's target (path and query)"
        errors [Inval, Fault, Aborted]
        => functions::uri;
    header(name_ptr, name_len, buf_ptr, buf_len, out_len_ptr) "a request header's value, by name"
        errors [Inval, Fault, Aborted]
        => functions::header;
    header_names(buf_ptr, buf_len, out_len_ptr) "the request's header names"
        errors [Inval, Fault, Aborted]
        => functions::header_names;
    set_status(status) "the response's status"
        errors [Inval, Aborted]
        => functions::set_status;
    set_header(name_ptr, name_len, value_ptr, value_len) "set a response header"
        errors [Inval, Fault, Quota, Aborted]
        => functions::set_header;
    append_header(name_ptr, name_len, value_ptr, value_len) "add a response header"
        errors [Inval, Fault, Quota, Aborted]
        => functions::append_header;
}

#[cfg(test)]
mod catalogue_tests {
    use super::*;

    const HEADER: &str = include_str!("../../../guest/include/custody.h");
    const RELIABILITY: &str = include_str!("../../../docs/RELIABILITY.md");

    #[test]
    fn custody_h_declares_every_function_as_the_catalogue_does() {
        extension::assert_declared(FUNCTIONS, HEADER, "CUSTODY_HTTP_IMPORT_", "custody_http_");
    }

    #[test]
    fn the_documented_category_table_matches_the_functions() {
        extension::assert_documented(FUNCTIONS, RELIABILITY);
    }
}
