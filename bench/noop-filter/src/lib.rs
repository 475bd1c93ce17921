//! A do-nothing proxy-wasm HTTP filter: every request continues untouched. `make bench`
//! loads it to measure what a Wasm VM costs in Envoy before any filter logic, so that
//! jwt-edge's own memory can be told apart from V8's.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
}}

struct Noop;

impl Context for Noop {}

// The trait's defaults return `Action::Continue` for every callback.
impl HttpContext for Noop {}
