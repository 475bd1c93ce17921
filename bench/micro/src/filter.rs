//! The proxy-wasm side: `GET /bench?alg=RS256&n=200[&reps=5]` runs the benchmark inside the
//! request callback, timed with the host clock, and answers with its JSON report.
//! `GET /hostcalls?n=2000` times the host calls jwt-edge makes per request, on the request's
//! own headers. `GET /once?alg=ES256&op=decide` times one operation per request (`Once`),
//! `GET /once_report` returns the medians.
//!
//! The jwt-edge library brings its own `proxy_wasm::main!` (`_initialize`), which installs
//! jwt-edge's root context. A second `_initialize` would not link, so this module exports
//! `main` instead: proxy-wasm hosts call a reactor's `main` right after `_initialize`
//! ("to allow module to do early initialization (e.g. configure SDK)", proxy-wasm-cpp-host
//! `WasmBase::startVm`), and it replaces the root context with this one.

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

/// `JWT_EDGE_BENCH` in the VM's environment (`vm_config.environment_variables`) picks the
/// root context: unset, this micro-benchmark; `jwt-edge`, jwt-edge's own filter (its root
/// context stays); `ladder:<rung>`, a rung of the ablation ladder (`ladder.rs`).
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: i32) -> i32 {
    let mode = std::env::var("JWT_EDGE_BENCH").unwrap_or_default();
    if mode == "jwt-edge" {
        return 0;
    }
    proxy_wasm::set_log_level(LogLevel::Warn);
    if let Some(rung) = mode.strip_prefix("ladder:") {
        // An unknown rung (None) fails the configuration: it must not measure something
        // else quietly.
        crate::ladder::RUNG.with(|r| r.set(crate::ladder::Rung::parse(rung)));
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
            Box::new(crate::ladder::LadderRoot::new(
                crate::ladder::RUNG.with(std::cell::Cell::get),
            ))
        });
        return 0;
    }
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BenchRoot) });
    0
}

struct BenchRoot;

impl Context for BenchRoot {}

impl RootContext for BenchRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(BenchRequest))
    }
}

struct BenchRequest;

thread_local! {
    /// `/once`'s cases and samples (one VM per thread).
    static ONCE: std::cell::RefCell<crate::Once> = const { std::cell::RefCell::new(crate::Once::new()) };
}

impl Context for BenchRequest {}

fn host_now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// µs per call of each host call jwt-edge makes per request, timed in this request callback
/// after 20 untimed calls (`empty_loop` is the loop and the two clock reads alone).
fn host_call_costs(n: u32) -> serde_json::Value {
    use proxy_wasm::types::{MapType, MetricType};
    let time = |f: &mut dyn FnMut()| {
        for _ in 0..20 {
            f();
        }
        let start = host_now_ns();
        for _ in 0..n {
            f();
        }
        host_now_ns().saturating_sub(start) as f64 / 1000.0 / f64::from(n)
    };
    let counter = hostcalls::define_metric(MetricType::Counter, "bench_micro.counter").ok();
    serde_json::json!({
        "n": n,
        "get_current_time": time(&mut || { let _ = hostcalls::get_current_time(); }),
        "get_map_bytes_request_headers": time(&mut || {
            let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
        }),
        "get_map_value_authorization": time(&mut || {
            let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "authorization");
        }),
        "set_map_value_header": time(&mut || {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-bench", Some("user-123"));
        }),
        "remove_map_value_header": time(&mut || {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-bench", None);
        }),
        "increment_metric": time(&mut || {
            if let Some(id) = counter {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }),
        "empty_loop": time(&mut || {}),
    })
}

/// µs per call of Envoy's `verify_signature` foreign function (BoringSSL through the host,
/// Envoy >= 1.30) on the RS256 fixture token, timed in this request callback after 20 untimed
/// calls: a reference for what native crypto costs from inside the sandbox, key import on
/// every call included. Measured only; jwt-edge does not use it. Every call must verify.
fn verify_signature_cost(n: u32) -> Result<serde_json::Value, String> {
    let args = crate::verify_signature_args()?;
    let call = || -> Result<bool, String> {
        match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
            Ok(Some(result)) => Ok(crate::verify_signature_ok(&result)),
            Ok(None) => Err("verify_signature returned nothing".into()),
            Err(status) => Err(format!("verify_signature: {status:?}")),
        }
    };
    for _ in 0..20 {
        if !call()? {
            return Err("verify_signature did not verify the fixture token".into());
        }
    }
    let start = host_now_ns();
    for _ in 0..n {
        if !call()? {
            return Err("verify_signature did not verify the fixture token".into());
        }
    }
    let us = host_now_ns().saturating_sub(start) as f64 / 1000.0 / f64::from(n.max(1));
    Ok(serde_json::json!({ "n": n, "verify_signature_us": us }))
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl HttpContext for BenchRequest {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let (route, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
        let result = if route == "/bench" {
            let alg = query_param(query, "alg").unwrap_or("RS256");
            let n = query_param(query, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            let reps = query_param(query, "reps")
                .and_then(|v| v.parse().ok())
                .unwrap_or(5);
            crate::run(alg, n, reps, &host_now_ns).map(|v| v.to_string())
        } else if route == "/rsa" {
            let n = query_param(query, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            let reps = query_param(query, "reps")
                .and_then(|v| v.parse().ok())
                .unwrap_or(5);
            crate::rsa_arithmetic(n, reps, &host_now_ns).map(|v| v.to_string())
        } else if route == "/foreign" {
            let n = query_param(query, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(200u32);
            verify_signature_cost(n).map(|v| v.to_string())
        } else if route == "/once" {
            let alg = query_param(query, "alg").unwrap_or("RS256");
            let op = query_param(query, "op").unwrap_or("decide");
            ONCE.with(|o| o.borrow_mut().time(alg, op, &host_now_ns))
                .map(|()| "ok".to_string())
        } else if route == "/once_report" {
            Ok(ONCE.with(|o| o.borrow_mut().report()).to_string())
        } else if route == "/hostcalls" {
            let n = query_param(query, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000u32);
            Ok(host_call_costs(n).to_string())
        } else {
            Err("GET /bench?alg=RS256&n=200&reps=5".to_string())
        };
        let (status, body) = match result {
            Ok(body) => (200, body),
            Err(e) => (400, serde_json::json!({ "error": e }).to_string()),
        };
        self.send_http_response(
            status,
            vec![("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        Action::Pause
    }
}
