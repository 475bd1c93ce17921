//! One VM's filter state, shared by its root context and its stream contexts, and the
//! handlers the proxy-wasm callbacks delegate to. The core decides ([`Authenticator`],
//! [`Sources`]): this file reads what the host offers, asks, and carries out the answer.

use std::collections::VecDeque;

use crate::authn::outcome::{Authenticator, HeaderOp, HostProfile, Plan, Request};
use crate::authn::policy::{JwksId, Policy};
use crate::authn::sender::mtls::ClientCertificate;
use crate::filter::host::Host;
pub use crate::sources::TICK_MS;
use crate::sources::{random_id, Command, Retry, Sources};
use crate::time::UnixMillis;

/// What the stream callback returns to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// The filter state of one VM.
#[derive(Debug)]
pub struct FilterState {
    auth: Authenticator,
    sources: Sources,
    /// The request headers of the stream being decided, kept between requests so that the
    /// host can refill the same strings ([`Host::read_request_headers`]).
    headers: Vec<(String, String)>,
}

impl FilterState {
    /// A VM's state for a compiled policy, the configuration text it came from (shared
    /// records are bound to it) and what the host can be trusted to do. Nothing is fetched
    /// until the first tick.
    pub fn new(policy: Policy, config: &str, profile: HostProfile) -> FilterState {
        FilterState {
            sources: Sources::new(&policy, config.as_bytes(), random_id()),
            auth: Authenticator::new(policy, profile),
            headers: Vec::new(),
        }
    }

    /// The root context's configuration is done: shared records the VM relies on are created
    /// before it serves (the DPoP replay caches: [`crate::sources::dpop_replay::seed`]; the
    /// DPoP nonce secrets: [`crate::sources::dpop_nonce::seed`]).
    pub fn on_configured(&self, host: &dyn Host) {
        self.sources.seed(host);
        crate::sources::dpop_replay::seed(host, self.auth.policy());
        crate::sources::dpop_nonce::seed(host, self.auth.policy());
    }

    /// Number of paused requests.
    pub fn pending_len(&self) -> usize {
        self.sources.pending_len()
    }

    /// The shared-data name of source `id`'s lifecycle record (for tests and tools).
    pub fn meta_key(&self, id: JwksId) -> Option<&str> {
        self.sources.meta_key(id)
    }

    /// The request-headers callback of stream `context_id`.
    pub fn on_request_headers(&mut self, host: &dyn Host, context_id: u32) -> Action {
        let now = host.now_ms();
        self.decide(host, now, context_id, Retry::default())
    }

    /// The request-body or request-trailers callback of stream `context_id`: held while the
    /// stream waits for keys or after it was refused, so that only a decision to allow (and
    /// the resume that carries it out) lets the request go on.
    pub fn on_request_data(&self, context_id: u32) -> Action {
        if self.sources.holds(context_id) {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// A stream ended: it must never be resumed.
    pub fn on_stream_done(&mut self, context_id: u32) {
        self.sources.stream_done(context_id);
    }

    /// The root context's tick.
    pub fn on_tick(&mut self, host: &dyn Host) {
        let now = host.now_ms();
        let commands = self.sources.tick(now, host);
        self.run(host, now, commands);
    }

    /// The response to a call the key sources started.
    pub fn on_http_call_response(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        let now = host.now_ms();
        let headers = host.call_response_headers();
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .map_or("", |(_, v)| v.as_str());
        let body = self
            .sources
            .body_wanted(token, status, body_size)
            .then(|| host.call_response_body(body_size).unwrap_or_default());
        let commands = self
            .sources
            .answer(now, host, token, status, body_size, body);
        self.run(host, now, commands);
    }

    /// Decides the current stream `stream` and carries the plan out.
    fn decide(&mut self, host: &dyn Host, now: UnixMillis, stream: u32, retry: Retry) -> Action {
        let mut headers = std::mem::take(&mut self.headers);
        host.read_request_headers(&mut headers);
        let route_name = if self.auth.needs_route_name() {
            host.route_name()
        } else {
            None
        };
        // A host call only where some provider checks certificate-bound tokens. What the host
        // gives is checked as a hex SHA-256 in the core: garbage counts as no certificate.
        let digest = if self.auth.needs_client_certificate() {
            host.peer_certificate_digest()
        } else {
            None
        };
        let req = Request {
            headers: &headers,
            route_name: route_name.as_deref(),
            client_certificate: digest.as_deref().map(ClientCertificate::Sha256Hex),
        };
        let (plan, commands) = self
            .sources
            .decide(&self.auth, host, now, stream, req, retry);
        let (action, refused) = apply(host, plan);
        if refused {
            self.sources.refused(stream);
        }
        self.headers = headers;
        self.run(host, now, commands);
        action
    }

    /// Carries out the key sources' commands.
    fn run(&mut self, host: &dyn Host, now: UnixMillis, commands: Vec<Command>) {
        let mut queue = VecDeque::from(commands);
        while let Some(command) = queue.pop_front() {
            match command {
                // Every call from the root context, which receives the answer: Envoy and
                // ngx_wasm_module both answer a call to the context that dispatched it.
                Command::Dispatch { from: _, call } => {
                    let result =
                        host.dispatch_http_call(&call.cluster, &call.headers(), call.timeout_ms);
                    queue.extend(self.sources.dispatched(now, host, &call, result));
                }
                Command::Decide {
                    stream,
                    waited,
                    last_chance,
                    deadline_ms,
                } => {
                    if !host.set_effective_context(stream) {
                        continue;
                    }
                    let retry = Retry {
                        waited,
                        last_chance,
                        deadline_ms: Some(deadline_ms),
                    };
                    if self.decide(host, now, stream, retry) == Action::Continue {
                        host.resume_request();
                    }
                }
                Command::ClearTokenCache => self.auth.clear_cache(),
                Command::Counter(name, delta) => host.increment_counter(&name, delta),
                Command::Gauge(name, value) => host.set_gauge(&name, value),
                Command::Log(level, text) => log::log!(level, "{text}"),
            }
        }
    }
}

/// Carries out a plan on the current stream, verbatim; `true` with it when the host refused
/// a header change of an allowed request, which is then answered `503
/// header_change_refused` instead: with a change missing, a client's copy of an identity
/// header or a token not to forward could reach the upstream.
fn apply(host: &dyn Host, plan: Plan<'_>) -> (Action, bool) {
    let mut all_made = true;
    for op in plan.header_ops() {
        let (made, change, name) = match op {
            HeaderOp::Remove(name) => (host.remove_request_header(name), "remove", name),
            HeaderOp::Set(name, value) => (host.set_request_header(name, value), "replace", name),
            HeaderOp::Add(name, value) => (host.add_request_header(name, value), "add", name),
        };
        if !made {
            // The header's name only: names are the configuration's or a client's, never a
            // value.
            log::error!("host refused to {change} request header {name}");
            all_made = false;
        }
    }
    let refused = !all_made && plan.allowed();
    let plan = if refused {
        plan.header_change_refused()
    } else {
        plan
    };
    // Before the local reply: Envoy's access log reads the filter state the reply leaves.
    for (name, value) in plan.properties() {
        host.set_property(name, value.as_bytes());
    }
    plan.counters(|name, delta| host.increment_counter(name, delta));
    plan.log_lines(log::max_level(), |level, line| log::log!(level, "{line}"));
    if let Some(reply) = plan.reply() {
        host.send_response(reply.status, &reply.headers, reply.body.as_bytes());
    }
    let action = if plan.allowed() {
        Action::Continue
    } else {
        Action::Pause
    };
    (action, refused)
}
