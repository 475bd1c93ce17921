//! The host calls the adapter needs, as one trait: the real one wraps proxy-wasm hostcalls
//! (`proxy.rs`), the fake one records what the adapter did (`fake.rs`).
//!
//! Every method is infallible or returns a `Result`/`Option`: host failures (a context that
//! went away, a CAS race) are ordinary outcomes here, never panics.

use crate::sources::SharedData;
use crate::time::{Millis, UnixMillis};

/// The host, as seen from the adapter; its shared data is the key sources' [`SharedData`]
/// (reads with a CAS token, compare-and-swap writes).
pub trait Host: SharedData {
    /// Wall-clock time.
    fn now_ms(&self) -> UnixMillis;

    /// The current stream's request headers (lower-case names).
    fn request_headers(&self) -> Vec<(String, String)>;
    /// [`request_headers`](Host::request_headers) into `out`, which the caller keeps from
    /// one request to the next: a host can reuse its strings' buffers instead of allocating
    /// two strings per header on every request.
    fn read_request_headers(&self, out: &mut Vec<(String, String)>) {
        *out = self.request_headers();
    }
    /// The route name the host selected (Envoy `xds.route_name`), if it has one.
    fn route_name(&self) -> Option<String>;
    /// The SHA-256 of the downstream client certificate's DER, as the host gives it (Envoy's
    /// `connection.sha256_peer_certificate_digest`: lower-case hex, absent without a client
    /// certificate). `None` when the host has none or no such attribute.
    fn peer_certificate_digest(&self) -> Option<String>;
    /// Replaces a request header. `false`: the host refused.
    fn set_request_header(&self, name: &str, value: &str) -> bool;
    /// Adds a request header the request does not carry: the caller knows it is absent, so
    /// the host need not look for copies to replace (Envoy's replace removes every copy of
    /// the name, then adds). `false`: the host refused.
    fn add_request_header(&self, name: &str, value: &str) -> bool;
    /// Removes a request header (every value). `false`: the host refused.
    fn remove_request_header(&self, name: &str) -> bool;
    /// Publishes `value` under `name` for the current stream through the property API
    /// (`proxy_set_property`): Envoy keeps it as filter state `wasm.<name>`, ngx_wasm_module
    /// sets the NGINX variable of a `ngx.<var>` name. A host that refuses is ignored.
    fn set_property(&self, name: &str, value: &[u8]);
    /// Sends a local reply on the current stream.
    fn send_response(&self, status: u32, headers: &[(String, String)], body: &[u8]);
    /// Resumes the current (paused) stream. `false` if the host refused.
    fn resume_request(&self) -> bool;
    /// Makes `context_id` the current stream. `false` if it no longer exists.
    fn set_effective_context(&self, context_id: u32) -> bool;

    /// Starts an HTTP call to `cluster`; returns the call token.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: Millis,
    ) -> Result<u32, String>;
    /// Response headers of the call being answered (inside the call-response callback).
    fn call_response_headers(&self) -> Vec<(String, String)>;
    /// Up to `max` bytes of the body of the call being answered.
    fn call_response_body(&self, max: usize) -> Option<Vec<u8>>;

    /// Sets the root context's tick period.
    fn set_tick_period_ms(&self, ms: Millis);
    /// Adds `delta` to the counter `name` (defined on first use).
    fn increment_counter(&self, name: &str, delta: i64);
    /// Sets the gauge `name` (defined on first use).
    fn set_gauge(&self, name: &str, value: u64);
}
