//! The proxy-wasm glue: the only code that calls the SDK. It registers the root context,
//! implements [`Host`] with hostcalls that return `Result` (the SDK's trait helpers unwrap
//! on unexpected host statuses, which would trap the VM), and forwards every callback to
//! [`FilterState`].

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action as ProxyAction, ContextType, LogLevel, MapType, MetricType, Status,
};

use crate::authn::config;
use crate::authn::outcome::HostProfile;
use crate::filter::host::Host;
use crate::filter::state::{Action, FilterState};
use crate::metrics::MetricIds;
use crate::sources::{SharedData, WriteError};
use crate::time::{Millis, UnixMillis};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    // The SDK's hook logs the panic at critical; a panic still traps this VM (and Envoy's
    // failure_policy decides what follows), so the code is written to have none.
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, state: None })
    });
}}

/// The module's allocator: free lists of small blocks in front of wasi-libc's dlmalloc
/// (src/heap.rs).
#[global_allocator]
static HEAP: crate::heap::SizeClasses = crate::heap::SizeClasses::new();

thread_local! {
    static METRICS: RefCell<MetricIds> = RefCell::new(MetricIds::default());
    /// `metrics: false` in the configuration turns every metrics host call off.
    static METRICS_ON: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
    /// Counter increments not yet handed to the host, by metric id ([`flush_counters`]).
    static PENDING: RefCell<Vec<(u32, i64)>> = const { RefCell::new(Vec::new()) };
    /// Root contexts whose tick period is already set.
    static TICKING: RefCell<std::collections::HashSet<u32>> = RefCell::new(std::collections::HashSet::new());
}

/// The host, through proxy-wasm hostcalls. Public for `bench/micro`'s ablation ladder, which
/// times this very implementation one host call at a time.
pub struct ProxyHost;

fn metric_id(name: &str, kind: MetricType) -> Option<u32> {
    if !METRICS_ON.with(std::cell::Cell::get) {
        return None;
    }
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(id) = m.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        m.insert(name.to_owned(), id);
        Some(id)
    })
}

/// Hands the counter increments of this VM's requests since the last tick to the host.
/// Counted in the VM and flushed on the root context's tick (every [`TICK_MS`]) and when it
/// is done: a request pays no metric host call (two to three per request otherwise, ~5K
/// instructions in Envoy, issue #13), and admin `/stats` is at most a tick behind.
///
/// [`TICK_MS`]: crate::filter::state::TICK_MS
fn flush_counters() {
    // No host call below calls back into the module: the borrow is never re-entered.
    PENDING.with(|p| {
        for (id, delta) in p.borrow_mut().drain(..) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    });
}

impl SharedData for ProxyHost {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), WriteError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(WriteError::CasMismatch),
            Err(_) => Err(WriteError::Other),
        }
    }
}

impl Host for ProxyHost {
    fn now_ms(&self) -> UnixMillis {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(UnixMillis::EPOCH, UnixMillis::from_since_epoch)
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        // The byte variant: the string one panics on a header value that is not UTF-8.
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
            .map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(mut k, v)| {
                        // In place: HTTP/1 and HTTP/2 codecs hand names over lower-case
                        // already, and values are nearly always UTF-8 (no copy then).
                        k.make_ascii_lowercase();
                        let v = String::from_utf8(v)
                            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                        (k, v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn read_request_headers(&self, out: &mut Vec<(String, String)>) {
        // The raw import: the SDK's `get_map_bytes` builds a String and a Vec per pair, which
        // are freed again at the end of the request; here the caller's strings are refilled
        // in place (no allocation once they are long enough) from the host's one buffer.
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer and a size to the two locations; the pointer is a
        // buffer it obtained from this module's `proxy_on_memory_allocate` (the SDK's: a
        // `Vec<u8>` of capacity `size`, forgotten), or null.
        let status =
            unsafe { proxy_get_header_map_pairs(MAP_REQUEST_HEADERS, &mut data, &mut size) };
        let bytes = if status == 0 && !data.is_null() && size > 0 {
            // SAFETY: as above: ours to own and free, `size` bytes, all written by the host.
            unsafe { Vec::from_raw_parts(data, size, size) }
        } else {
            Vec::new()
        };
        crate::filter::headers::refill(out, &bytes);
    }

    fn route_name(&self) -> Option<String> {
        hostcalls::get_property(vec!["xds", "route_name"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
    }

    fn peer_certificate_digest(&self) -> Option<String> {
        // Envoy 1.40: absent (NotFound) on a connection without a client certificate or
        // without TLS; ngx_wasm_module 3bed278 has the attribute as NYI (absent too).
        hostcalls::get_property(vec!["connection", "sha256_peer_certificate_digest"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
    }

    // The raw imports for header changes: the SDK's `hostcalls::set_map_value` and
    // `add_map_value` panic on any status but Ok, and a panic traps the VM. A change the
    // host refuses is reported to the adapter, which refuses the request
    // (`header_change_refused`).
    fn set_request_header(&self, name: &str, value: &str) -> bool {
        write_request_header::<false>(name, value)
    }

    fn add_request_header(&self, name: &str, value: &str) -> bool {
        write_request_header::<true>(name, value)
    }

    fn remove_request_header(&self, name: &str) -> bool {
        // SAFETY: as in `write_request_header`.
        let status = unsafe {
            proxy_remove_header_map_value(MAP_REQUEST_HEADERS, name.as_ptr(), name.len())
        };
        status == 0
    }

    fn set_property(&self, name: &str, value: &[u8]) {
        // The raw import: the SDK's `hostcalls::set_property` panics on any status but Ok
        // (ngx_wasm_module answers NotFound for a name it does not know), and a panic traps
        // the VM. A one-segment path is the name's bytes, as the SDK would serialise it.
        // SAFETY: both pointers and lengths describe live byte slices for the whole call; the
        // host copies them and writes nothing back.
        let status =
            unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
        if status != 0 {
            log::debug!("host refused property {name}: status {status}");
        }
    }

    fn send_response(&self, status: u32, headers: &[(String, String)], body: &[u8]) {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = if body.is_empty() { None } else { Some(body) };
        if let Err(e) = hostcalls::send_http_response(status, headers, body) {
            log::warn!("cannot send local reply: {e:?}");
        }
    }

    fn resume_request(&self) -> bool {
        hostcalls::resume_http_request().is_ok()
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        hostcalls::set_effective_context(context_id).is_ok()
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: Millis,
    ) -> Result<u32, String> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, vec![], timeout_ms.into())
            .map_err(|s| format!("{s:?}"))
    }

    fn call_response_headers(&self) -> Vec<(String, String)> {
        hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders)
            .map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn call_response_body(&self, max: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, max)
            .ok()
            .flatten()
    }

    fn set_tick_period_ms(&self, ms: Millis) {
        let _ = hostcalls::set_tick_period(ms.into());
    }

    fn increment_counter(&self, name: &str, delta: i64) {
        if let Some(id) = metric_id(name, MetricType::Counter) {
            PENDING.with(|p| {
                let mut p = p.borrow_mut();
                match p.iter_mut().find(|(pending, _)| *pending == id) {
                    Some((_, sum)) => *sum = sum.saturating_add(delta),
                    None => p.push((id, delta)),
                }
            });
        }
    }

    fn set_gauge(&self, name: &str, value: u64) {
        if let Some(id) = metric_id(name, MetricType::Gauge) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// proxy-wasm's `HttpRequestHeaders` map type.
const MAP_REQUEST_HEADERS: u32 = 0;

/// Replaces (`ADD` false) or adds a request header through the raw import; `true` when the
/// host answered Ok.
fn write_request_header<const ADD: bool>(name: &str, value: &str) -> bool {
    let (k, v) = (name.as_ptr(), value.as_ptr());
    // SAFETY: both pointers and lengths describe live byte slices for the whole call; the
    // host copies them and writes nothing back.
    let status = unsafe {
        if ADD {
            proxy_add_header_map_value(MAP_REQUEST_HEADERS, k, name.len(), v, value.len())
        } else {
            proxy_replace_header_map_value(MAP_REQUEST_HEADERS, k, name.len(), v, value.len())
        }
    };
    status == 0
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// proxy-wasm ABI 0.2.1 `proxy_get_header_map_pairs`; returns a `WasmResult` (0: Ok).
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;

    /// proxy-wasm ABI 0.2.1 `proxy_replace_header_map_value`; returns a `WasmResult` (0: Ok).
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;

    /// proxy-wasm ABI 0.2.1 `proxy_add_header_map_value`; returns a `WasmResult` (0: Ok).
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;

    /// proxy-wasm ABI 0.2.1 `proxy_remove_header_map_value`; returns a `WasmResult` (0: Ok).
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;

    /// proxy-wasm ABI 0.2.1 `proxy_set_property`; returns a `WasmResult` (0: Ok).
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// Runs `f` on the filter state, if configured and not already in use.
fn with_state(state: &Option<Rc<RefCell<FilterState>>>, f: impl FnOnce(&mut FilterState)) {
    if let Some(mut s) = state.as_ref().and_then(|s| s.try_borrow_mut().ok()) {
        f(&mut s);
    }
}

/// The root context: configuration, ticks, key-set fetches, resuming paused streams.
struct Root {
    context_id: u32,
    state: Option<Rc<RefCell<FilterState>>>,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        flush_counters();
        true
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        with_state(&self.state, |s| {
            s.on_http_call_response(&ProxyHost, token_id, body_size)
        });
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        // Until the configuration says otherwise: configuration errors must be seen.
        proxy_wasm::set_log_level(LogLevel::Info);
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let text = match std::str::from_utf8(&raw) {
            Ok(t) => t,
            Err(_) => {
                log::error!("jwt-edge configuration is not UTF-8");
                return false;
            }
        };
        match config::parse(text) {
            Ok(policy) => {
                // Format only what the host will print.
                log::set_max_level(policy.log_filter());
                METRICS_ON.with(|m| m.set(policy.metrics));
                let providers = policy.providers.len();
                let rules = policy.rules.len();
                // Told apart by a switch to a context that cannot exist (see `probed`).
                let probe = hostcalls::set_effective_context(u32::MAX).is_ok();
                let profile = HostProfile::probed(probe);
                if let Some(warning) = profile.warning() {
                    log::warn!("{warning}");
                }
                let state = FilterState::new(policy, text, profile);
                state.on_configured(&ProxyHost);
                self.state = Some(Rc::new(RefCell::new(state)));
                // The first call runs the FMA probe and known-answer test (~1 ms, once per
                // VM), so keys loaded later never wait for it.
                let rsa = crate::crypto::bigmod::Arithmetic::current().describe();
                log::info!(
                    "jwt-edge configured: {providers} providers, {rules} rules; RSA arithmetic: {rsa}"
                );
                // The first tick starts key-set fetches. Set once per root context: a
                // configuration update must not set it again.
                if TICKING.with(|t| t.borrow_mut().insert(self.context_id)) {
                    ProxyHost.set_tick_period_ms(crate::filter::state::TICK_MS);
                }
                true
            }
            Err(e) => {
                log::error!("jwt-edge configuration rejected: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        with_state(&self.state, |s| s.on_tick(&ProxyHost));
        flush_counters();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            context_id,
            state: self.state.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream.
struct Stream {
    context_id: u32,
    state: Option<Rc<RefCell<FilterState>>>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(
        &mut self,
        _num_headers: usize,
        _end_of_stream: bool,
    ) -> ProxyAction {
        match self.state.as_ref().and_then(|s| s.try_borrow_mut().ok()) {
            Some(mut s) => to_proxy(s.on_request_headers(&ProxyHost, self.context_id)),
            // Not configured (or the state is in use): fail closed.
            None => {
                ProxyHost.send_response(500, &[], b"");
                ProxyAction::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> ProxyAction {
        self.request_data()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> ProxyAction {
        self.request_data()
    }
}

impl Stream {
    /// Body and trailers of a stream that waits for keys or was refused stay held (the SDK's
    /// default would let them, and with them the paused headers, through on some hosts).
    /// (Not configured: the headers callback answered 500, and this holds.)
    fn request_data(&self) -> ProxyAction {
        self.state
            .as_ref()
            .and_then(|s| s.try_borrow().ok())
            .map_or(ProxyAction::Pause, |s| {
                to_proxy(s.on_request_data(self.context_id))
            })
    }
}

fn to_proxy(action: Action) -> ProxyAction {
    match action {
        Action::Continue => ProxyAction::Continue,
        Action::Pause => ProxyAction::Pause,
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The host deletes a stream's context once it is done: never resume it after that.
        with_state(&self.state, |s| s.on_stream_done(self.context_id));
    }
}
