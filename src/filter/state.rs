//! One VM's filter state, shared by its root context and its stream contexts, and the
//! handlers the proxy-wasm callbacks delegate to. Key sources are the core's
//! ([`crate::sources`]): this file hands it events and carries out its commands.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::authn::authenticate::{decide_cached, Decision};
use crate::authn::policy::{JwksId, Policy};
use crate::authn::request::RequestView;
use crate::authn::token_cache::TokenCache;
use crate::filter::host::{Host, SharedWriteError};
use crate::filter::metrics;
pub use crate::sources::{log_safe, TICK_MS};
use crate::sources::{random_id, Command, SharedData, Sources, Waiting};

/// Decisions of one stream in a row before it is decided with what is there: each extra
/// round adds a source the stream waited for, so this is never reached in practice.
const MAX_ROUNDS: usize = 8;

/// What the stream callback returns to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// What became of a request.
enum Outcome {
    /// Let through (header changes applied).
    Allowed,
    /// Answered with a local reply.
    Denied,
    /// Must wait for these sources.
    Wait(Vec<JwksId>),
}

/// Shared data through the host.
struct Store<'a>(&'a dyn Host);

impl SharedData for Store<'_> {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.get_shared(key)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        self.0.set_shared(key, value, cas)
    }
}

/// The filter state of one VM.
#[derive(Debug)]
pub struct FilterState {
    policy: Arc<Policy>,
    sources: Sources,
    /// Verified tokens of this VM; cleared whenever a key set changes.
    cache: TokenCache,
    /// `jwt_edge.provider.<name>.allowed` per provider, built once: not per request.
    allowed_metrics: Vec<String>,
}

impl FilterState {
    /// A VM's state for a compiled policy and the configuration text it came from (shared
    /// records are bound to it). Nothing is fetched until the first tick.
    pub fn new(policy: Policy, config: &str) -> FilterState {
        FilterState {
            cache: TokenCache::new(policy.providers.iter().map(|p| p.jwt_cache_size)),
            allowed_metrics: policy
                .providers
                .iter()
                .map(|p| metrics::provider_allowed(&p.name))
                .collect(),
            sources: Sources::new(&policy, config.as_bytes(), random_id()),
            policy: Arc::new(policy),
        }
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
        self.decide(host, now, context_id, Vec::new(), false, None)
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
        let commands = self.sources.tick(now, &Store(host));
        self.run(host, now, commands);
    }

    /// The response to a call the key sources started.
    pub fn on_http_call_response(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        let Some(max) = self.sources.answer_limit(token) else {
            return;
        };
        let now = host.now_ms();
        let status = host
            .call_response_headers()
            .into_iter()
            .find(|(k, _)| k == ":status")
            .map(|(_, v)| v)
            .unwrap_or_default();
        let body = (status == "200" && body_size <= max)
            .then(|| host.call_response_body(body_size).unwrap_or_default());
        let commands = self
            .sources
            .answer(now, &Store(host), token, &status, body_size, body);
        self.run(host, now, commands);
    }

    /// Decides the current stream `stream` until it is allowed, refused or waits.
    fn decide(
        &mut self,
        host: &dyn Host,
        now: u64,
        stream: u32,
        mut waited: Vec<JwksId>,
        last_chance: bool,
        deadline: Option<u64>,
    ) -> Action {
        for round in 1..=MAX_ROUNDS {
            match self.handle(host, now, &waited, last_chance || round == MAX_ROUNDS) {
                Outcome::Allowed => return Action::Continue,
                Outcome::Denied => {
                    self.sources.refused(stream);
                    return Action::Pause;
                }
                Outcome::Wait(ids) => {
                    match self.sources.wait(now, &Store(host), stream, ids, deadline) {
                        Waiting::Paused(commands) => {
                            self.run(host, now, commands);
                            return Action::Pause;
                        }
                        Waiting::DecideNow(more) => waited.extend(more),
                    }
                }
            }
        }
        // Not reached: the last round is a last chance, which never waits.
        self.sources.refused(stream);
        host.send_response(503, &[], b"");
        Action::Pause
    }

    /// Carries out the key sources' commands.
    fn run(&mut self, host: &dyn Host, now: u64, commands: Vec<Command>) {
        let mut queue = VecDeque::from(commands);
        while let Some(command) = queue.pop_front() {
            match command {
                // Envoy: every call from the root context. (A host that answers calls to
                // the dispatching stream would carry out `Context::Stream` here.)
                Command::Dispatch { from: _, call } => {
                    let result =
                        host.dispatch_http_call(&call.cluster, &call.headers(), call.timeout_ms);
                    queue.extend(self.sources.dispatched(now, &Store(host), &call, result));
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
                    let action =
                        self.decide(host, now, stream, waited, last_chance, Some(deadline_ms));
                    if action == Action::Continue {
                        host.resume_request();
                    }
                }
                Command::ClearTokenCache => self.cache.clear(),
                Command::Counter(name, delta) => host.increment_counter(&name, delta),
                Command::Gauge(name, value) => host.set_gauge(&name, value),
                Command::Log(level, text) => log::log!(level, "{text}"),
            }
        }
    }

    /// Decides the current stream and carries the decision out.
    fn handle(
        &self,
        host: &dyn Host,
        now_ms: u64,
        waited: &[JwksId],
        last_chance: bool,
    ) -> Outcome {
        let policy = &self.policy;
        let mut headers = host.request_headers();
        // No client-supplied copy of an identity header survives, on any route.
        headers.retain(|(name, _)| {
            let forged = policy.is_identity_header(name);
            if forged {
                host.remove_request_header(name);
            }
            !forged
        });
        let route_name = if policy.per_route.is_empty() {
            None
        } else {
            host.route_name()
        };
        let req = RequestView::new(&headers, route_name.as_deref());
        let keys = self.sources.lookup(policy, now_ms, waited, last_chance);
        let decision = decide_cached(policy, &req, &keys, &self.cache, now_ms / 1000);
        let (hits, misses) = self.cache.take_stats();
        if hits > 0 {
            host.increment_counter(metrics::CACHE_HIT, hits as i64);
        }
        if misses > 0 {
            host.increment_counter(metrics::CACHE_MISS, misses as i64);
        }
        match decision {
            Decision::Allow(allow) => {
                for name in &allow.remove_headers {
                    host.remove_request_header(name);
                }
                for (name, value) in &allow.set_headers {
                    host.set_request_header(name, value);
                }
                if let Some(path) = &allow.new_path {
                    host.set_request_header(":path", path);
                }
                host.increment_counter(metrics::ALLOWED, 1);
                for id in &allow.identities {
                    if let Some(name) = self.allowed_metrics.get(id.provider_id) {
                        host.increment_counter(name, 1);
                    }
                    log::debug!(
                        "allowed: provider={} iss={} sub={} kid={}",
                        id.provider,
                        log_safe(id.iss.as_deref()),
                        log_safe(id.sub.as_deref()),
                        log_safe(id.kid.as_deref()),
                    );
                }
                if allow.reason == crate::authn::authenticate::AllowReason::CorsPreflight {
                    host.increment_counter(metrics::CORS_BYPASSED, 1);
                }
                Outcome::Allowed
            }
            Decision::Deny(denial) => {
                let code = denial.error.code();
                host.increment_counter(metrics::DENIED, 1);
                host.increment_counter(&metrics::denied_by_code(code), 1);
                if let Some(p) = &denial.provider {
                    host.increment_counter(&metrics::provider_denied(p, code), 1);
                }
                log::debug!(
                    "denied: code={code} status={} provider={} iss={} kid={} sub={} path={}",
                    denial.status,
                    denial.provider.as_deref().unwrap_or("-"),
                    log_safe(denial.iss.as_deref()),
                    log_safe(denial.kid.as_deref()),
                    log_safe(denial.sub.as_deref()),
                    log_safe(Some(req.path_without_query())),
                );
                host.send_response(denial.status, &denial.headers, denial.body.as_bytes());
                Outcome::Denied
            }
            Decision::WaitForKeys(ids) => Outcome::Wait(ids),
        }
    }
}
