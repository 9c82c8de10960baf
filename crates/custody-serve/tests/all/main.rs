//! custody-serve's tests: one binary, a module per theme. Each starts a
//! real server on 127.0.0.1 port 0 and talks HTTP to it; every test stops
//! by itself (deadlines are short, reads have timeouts).

mod config;
mod custody;
mod faults;
mod limits;
mod reload;
mod streaming;
mod support;
mod wagi;
