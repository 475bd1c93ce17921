//! One VM's filter state, shared by its root context and its stream contexts, and the
//! handlers the proxy-wasm callbacks delegate to.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::authn::authenticate::{decide_cached, Decision, KeyLookup, KeyState, ListState};
use crate::authn::discovery::{parse_discovery, MAX_DISCOVERY_BYTES};
use crate::authn::jwk::{parse_jwks, JwksOptions, KeySet, SkippedKey, MAX_JWKS_BYTES};
use crate::authn::jwks_cache::{decode_doc, encode_doc, SharedMeta};
use crate::authn::policy::{Document, JwksId, JwksSource, Policy, RemoteJwks};
use crate::authn::request::RequestView;
use crate::authn::revocation::{parse_revocation_list, Revocation, MAX_REVOCATION_BYTES};
use crate::authn::token_cache::TokenCache;
use crate::filter::host::{Host, SharedWriteError};
use crate::filter::metrics;

/// How long past a call's timeout the host's answer is still awaited.
const CALL_GRACE_MS: u64 = 1_000;
/// The root context's tick period, set once: paused requests are decided, and a key set
/// fetched by another VM is picked up, within this time. (Set once because some hosts,
/// ngx_wasm_module among them, refuse a second `set_tick_period`.) A tick reads one small
/// shared-data record per key source.
pub const TICK_MS: u64 = 100;

/// Warn lines about one source: a burst of this many, then one per [`WARN_REFILL_MS`]; lines
/// over the budget are counted and the count is reported with the next line written. (A
/// failed fetch is already paced by the backoff; this bounds what could repeat every tick,
/// per VM: an unusable shared copy, a shared-data write that keeps failing.)
pub const WARN_BURST: u32 = 5;
/// See [`WARN_BURST`].
pub const WARN_REFILL_MS: u64 = 10_000;

/// A token bucket for one source's warn lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarnBudget {
    tokens: u32,
    refilled_at: u64,
    suppressed: u32,
}

impl Default for WarnBudget {
    fn default() -> WarnBudget {
        WarnBudget {
            tokens: WARN_BURST,
            refilled_at: 0,
            suppressed: 0,
        }
    }
}

impl WarnBudget {
    /// `Some(lines suppressed since the last one written)` when a line may be written at `now`.
    pub fn admit(&mut self, now: u64) -> Option<u32> {
        let earned = now.saturating_sub(self.refilled_at) / WARN_REFILL_MS;
        if earned > 0 {
            self.tokens = (self.tokens as u64 + earned).min(WARN_BURST as u64) as u32;
            self.refilled_at = now;
        }
        if self.tokens == 0 {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// What the stream callback returns to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// One VM's view of one remote source: a key set, or a revocation list.
#[derive(Debug)]
struct RemoteSource {
    spec: RemoteJwks,
    /// A provider that uses this source: names it in logs and metrics.
    label: String,
    meta_key: String,
    doc_key: String,
    /// The last shared record this VM read.
    meta: SharedMeta,
    /// The installed document and the version it came from.
    installed: Option<(u64, Installed)>,
    /// Rate limit of this source's warn lines.
    warns: WarnBudget,
}

/// A document installed from a remote source.
#[derive(Debug, Clone)]
enum Installed {
    Keys(Arc<KeySet>),
    Revoked(Arc<Revocation>),
}

/// A fetched document that parsed.
struct Parsed {
    installed: Installed,
    /// Keys or entries.
    count: usize,
    skipped: Vec<SkippedKey>,
}

impl RemoteSource {
    /// A warn line about this source, within its budget.
    fn warn(&mut self, now: u64, message: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.warns.admit(now) {
            let note = if suppressed > 0 {
                format!(" ({suppressed} similar lines suppressed)")
            } else {
                String::new()
            };
            log::warn!("{} {}: {message}{note}", self.kind(), self.label);
        }
    }

    /// The installed document's version (0: none).
    fn version(&self) -> u64 {
        self.installed.as_ref().map_or(0, |(v, _)| *v)
    }

    /// The installed document, if it may still be used at `now_ms`.
    fn usable(&self, now_ms: u64) -> Option<&Installed> {
        let (_, doc) = self.installed.as_ref()?;
        self.meta
            .keys_usable(
                now_ms,
                self.spec.cache_duration_seconds * 1000,
                self.spec.max_stale_ms,
            )
            .then_some(doc)
    }

    /// `jwks` or `revocation`, for logs.
    fn kind(&self) -> &'static str {
        self.spec.document.label()
    }

    /// The largest document this source accepts.
    fn max_bytes(&self) -> usize {
        match self.spec.document {
            Document::Jwks => MAX_JWKS_BYTES,
            Document::RevocationList => MAX_REVOCATION_BYTES,
        }
    }

    /// Parses a document of this source's kind.
    fn parse(&self, body: &[u8]) -> Result<Parsed, String> {
        match self.spec.document {
            Document::Jwks => parse_jwks(
                body,
                JwksOptions {
                    allow_symmetric: false,
                },
            )
            .map(|load| Parsed {
                count: load.keys.len(),
                installed: Installed::Keys(Arc::new(load.keys)),
                skipped: load.skipped,
            })
            .map_err(|e| e.to_string()),
            Document::RevocationList => parse_revocation_list(body)
                .map(|list| Parsed {
                    count: list.len(),
                    installed: Installed::Revoked(Arc::new(list)),
                    skipped: Vec::new(),
                })
                .map_err(|e| format!("not a revocation list: {e}")),
        }
    }
}

/// Which document a call fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The OIDC discovery document (then the key set it names).
    Discovery,
    /// The source's document: the key set or the revocation list.
    Document,
}

/// What became of a request.
enum Outcome {
    /// Let through (header changes applied).
    Allowed,
    /// Answered with a local reply.
    Denied,
    /// Must wait for these sources (with the key-set versions installed now).
    Wait(Vec<(JwksId, u64)>),
}

/// A request paused until a key set arrives.
#[derive(Debug, Clone)]
struct Pending {
    context_id: u32,
    deadline_ms: u64,
    /// Per source, the key-set version installed when the request paused.
    waiting_on: Vec<(JwksId, u64)>,
}

/// The filter state of one VM.
#[derive(Debug)]
pub struct FilterState {
    policy: Arc<Policy>,
    /// Indexed like `policy.jwks_sources`; `None` for local sources.
    remotes: Vec<Option<RemoteSource>>,
    pending: Vec<Pending>,
    /// Streams answered with a local reply. With `pending`, the streams whose body and
    /// trailers must never be let through: a host that delivers body callbacks while the
    /// headers are paused (Envoy with `allow_on_headers_stop_iteration`, hosts without
    /// cpp-host's StopIteration -> StopAllIteration conversion) would otherwise forward
    /// headers and body when the body callback answers `Continue`.
    /// (A short list: a refused stream ends right after its local reply.)
    refused: Vec<u32>,
    /// In-flight calls: token → (source, step, time by which the host must have answered).
    calls: BTreeMap<u32, (JwksId, Step, u64)>,
    /// Verified tokens of this VM; cleared whenever a key set changes.
    cache: TokenCache,
    /// This VM's identity as a fetch-lease holder.
    vm_id: u64,
    /// `jwt_edge.provider.<name>.allowed` per provider, built once: not per request.
    allowed_metrics: Vec<String>,
}

/// The key view a request decision uses.
struct Keys<'a> {
    state: &'a FilterState,
    now_ms: u64,
    /// Last chance: nothing is pending any more, missing keys are unavailable.
    last_chance: bool,
    /// Versions at pause time: a refetch is only worth waiting for once.
    waited: &'a [(JwksId, u64)],
}

impl KeyLookup for Keys<'_> {
    fn keys(&self, id: JwksId) -> KeyState<'_> {
        match self.state.policy.jwks_sources.get(id) {
            Some(JwksSource::Local(keys)) => KeyState::Ready(keys),
            Some(JwksSource::Remote(spec)) => {
                let Some(Some(src)) = self.state.remotes.get(id) else {
                    return KeyState::Unavailable;
                };
                match src.usable(self.now_ms) {
                    Some(Installed::Keys(keys)) => KeyState::Ready(keys),
                    _ if self.last_chance || spec.document != Document::Jwks => {
                        KeyState::Unavailable
                    }
                    _ => KeyState::Pending,
                }
            }
            None => KeyState::Unavailable,
        }
    }

    fn revocation_list(&self, id: JwksId) -> ListState<'_> {
        let Some(Some(src)) = self.state.remotes.get(id) else {
            return ListState::Unavailable;
        };
        match src.usable(self.now_ms) {
            Some(Installed::Revoked(list)) => ListState::Ready(list),
            _ if self.last_chance || src.spec.document != Document::RevocationList => {
                ListState::Unavailable
            }
            _ => ListState::Pending,
        }
    }

    fn may_refetch(&self, id: JwksId) -> bool {
        if self.last_chance {
            return false;
        }
        let Some(Some(src)) = self.state.remotes.get(id) else {
            return false;
        };
        let version = src.version();
        // A request that already waited for a newer key set does not wait again.
        if self.waited.iter().any(|(w, v)| *w == id && *v != version) {
            return false;
        }
        // Worth waiting only if a fetch is under way or may be started now.
        self.now_ms < src.meta.in_flight_until
            || src
                .meta
                .request_refetch(self.now_ms, src.spec.refetch_interval_ms)
                .is_some()
    }
}

impl FilterState {
    /// A VM's state for a compiled policy. Nothing is fetched until the first tick.
    pub fn new(policy: Policy) -> FilterState {
        let remotes = policy
            .jwks_sources
            .iter()
            .enumerate()
            .map(|(id, source)| match source {
                JwksSource::Local(_) => None,
                JwksSource::Remote(spec) => {
                    let label = policy
                        .providers
                        .iter()
                        .find(|p| p.jwks == id || p.revocation_list == Some(id))
                        .map_or_else(|| format!("source{id}"), |p| p.name.clone());
                    let base = format!(
                        "jwt-edge/v1/{}/{}/{}",
                        spec.document.label(),
                        spec.cluster,
                        spec.uri
                    );
                    Some(RemoteSource {
                        spec: spec.clone(),
                        label,
                        meta_key: format!("{base}/meta"),
                        doc_key: format!("{base}/doc"),
                        meta: SharedMeta::default(),
                        installed: None,
                        warns: WarnBudget::default(),
                    })
                }
            })
            .collect();
        FilterState {
            cache: TokenCache::new(policy.providers.iter().map(|p| p.jwt_cache_size)),
            allowed_metrics: policy
                .providers
                .iter()
                .map(|p| metrics::provider_allowed(&p.name))
                .collect(),
            policy: Arc::new(policy),
            remotes,
            pending: Vec::new(),
            refused: Vec::new(),
            calls: BTreeMap::new(),
            vm_id: random_id(),
        }
    }

    /// Number of paused requests.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The request-headers callback of stream `context_id`.
    pub fn on_request_headers(&mut self, host: &dyn Host, context_id: u32) -> Action {
        let now = host.now_ms();
        match self.handle(host, now, &[], false) {
            Outcome::Wait(waiting_on) => {
                host.increment_counter(metrics::PAUSED, 1);
                self.request_refetches(host, now, &waiting_on);
                let wait = waiting_on
                    .iter()
                    .filter_map(|(id, _)| match self.remotes.get(*id) {
                        Some(Some(src)) => Some(src.spec.wait_timeout_ms),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                self.pending.push(Pending {
                    context_id,
                    deadline_ms: now + wait,
                    waiting_on,
                });
                Action::Pause
            }
            Outcome::Allowed => Action::Continue,
            Outcome::Denied => {
                self.refused.push(context_id);
                Action::Pause
            }
        }
    }

    /// The request-body or request-trailers callback of stream `context_id`: held while the
    /// stream waits for keys or after it was refused, so that only a decision to allow (and
    /// the resume that carries it out) lets the request go on.
    pub fn on_request_data(&self, context_id: u32) -> Action {
        if self.refused.contains(&context_id)
            || self.pending.iter().any(|p| p.context_id == context_id)
        {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// A stream ended: it must never be resumed.
    pub fn on_stream_done(&mut self, context_id: u32) {
        self.pending.retain(|p| p.context_id != context_id);
        self.refused.retain(|id| *id != context_id);
    }

    /// Decides the current stream and carries the decision out.
    fn handle(
        &self,
        host: &dyn Host,
        now_ms: u64,
        waited: &[(JwksId, u64)],
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
        let keys = Keys {
            state: self,
            now_ms,
            last_chance,
            waited,
        };
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
            Decision::WaitForKeys(ids) => Outcome::Wait(
                ids.into_iter()
                    .map(|id| (id, self.installed_version(id)))
                    .collect(),
            ),
        }
    }

    fn installed_version(&self, id: JwksId) -> u64 {
        match self.remotes.get(id) {
            Some(Some(src)) => src.version(),
            _ => 0,
        }
    }

    /// Asks for early refetches of sources that have keys (an unknown `kid` made the request
    /// wait): rate-limited through the shared record.
    fn request_refetches(&mut self, host: &dyn Host, now: u64, waiting_on: &[(JwksId, u64)]) {
        for (id, _) in waiting_on {
            let Some(Some(src)) = self.remotes.get_mut(*id) else {
                continue;
            };
            if src.installed.is_none() || src.spec.document != Document::Jwks {
                continue;
            }
            let (current, cas) = read_meta(host, &src.meta_key);
            if let Some(next) = current.request_refetch(now, src.spec.refetch_interval_ms) {
                if host.set_shared(&src.meta_key, &next.encode(), cas).is_ok() {
                    log::info!("jwks {}: unknown kid, refetching early", src.label);
                    src.meta = next;
                }
            }
        }
        // The fetch itself starts on the root context's next tick: a call dispatched from
        // a stream context would be answered to that stream, not to the root.
    }

    /// The root context's tick: sync key sets from shared data, start due fetches, decide
    /// paused requests whose keys arrived or whose time is up.
    pub fn on_tick(&mut self, host: &dyn Host) {
        let now = host.now_ms();
        self.sync_from_shared(host, now);
        self.renew_leases(host, now);
        self.start_due_fetches(host, now);
        self.resume_ready(host, now);
    }

    /// Reads every remote source's shared record; installs a newer key set if there is one.
    fn sync_from_shared(&mut self, host: &dyn Host, now: u64) {
        for src in self.remotes.iter_mut().flatten() {
            let (raw, _) = host.get_shared(&src.meta_key);
            let Some(meta) = raw.as_deref().and_then(SharedMeta::decode) else {
                continue;
            };
            src.meta = meta;
            if meta.doc_version > src.version()
                && install_from_shared(host, src, now)
                && src.spec.document == Document::Jwks
            {
                // Cached tokens are only as good as the keys that verified them. (Revocation
                // lists are consulted on every cache hit: no need to clear for them.)
                self.cache.clear();
            }
        }
    }

    /// Keeps the lease of every source this VM is fetching, so that no other VM starts a
    /// second fetch, and so that the lease lapses quickly if this VM goes away.
    fn renew_leases(&mut self, host: &dyn Host, now: u64) {
        // A call the host never answered (its VM's callbacks went elsewhere) is given up
        // after its timeout: the lease is released so that another VM fetches.
        let overdue: Vec<u32> = self
            .calls
            .iter()
            .filter(|(_, (_, _, deadline))| now > *deadline)
            .map(|(token, _)| *token)
            .collect();
        for token in overdue {
            let Some((id, _, _)) = self.calls.remove(&token) else {
                continue;
            };
            if let Some(Some(src)) = self.remotes.get_mut(id) {
                let (current, cas) = read_meta(host, &src.meta_key);
                if current.holder == self.vm_id {
                    let released = SharedMeta {
                        in_flight_until: 0,
                        holder: 0,
                        ..current
                    };
                    if host
                        .set_shared(&src.meta_key, &released.encode(), cas)
                        .is_ok()
                    {
                        src.meta = released;
                    }
                }
                src.warn(now, format_args!("fetch got no answer in time; released"));
            }
        }
        let fetching: std::collections::BTreeSet<JwksId> =
            self.calls.values().map(|(id, _, _)| *id).collect();
        for id in fetching {
            let Some(Some(src)) = self.remotes.get_mut(id) else {
                continue;
            };
            let (current, cas) = read_meta(host, &src.meta_key);
            if let Some(renewed) = current.renew(now, self.vm_id) {
                if host
                    .set_shared(&src.meta_key, &renewed.encode(), cas)
                    .is_ok()
                {
                    src.meta = renewed;
                }
            }
        }
    }

    /// Takes the fetch lease (CAS) for every due source and dispatches the fetch.
    fn start_due_fetches(&mut self, host: &dyn Host, now: u64) {
        for (id, slot) in self.remotes.iter_mut().enumerate() {
            let Some(src) = slot else { continue };
            if !src.meta.fetch_due(now) {
                continue;
            }
            let (current, cas) = read_meta(host, &src.meta_key);
            if !current.fetch_due(now) {
                src.meta = current;
                continue;
            }
            let leased = current.begin_fetch(now, self.vm_id);
            match host.set_shared(&src.meta_key, &leased.encode(), cas) {
                Ok(()) => src.meta = leased,
                Err(SharedWriteError::CasMismatch) => continue,
                Err(SharedWriteError::Other) => {
                    src.warn(now, format_args!("cannot write shared data"));
                    continue;
                }
            }
            let step = if src.spec.discovery_issuer.is_some() {
                Step::Discovery
            } else {
                Step::Document
            };
            let (authority, path) = (src.spec.authority.clone(), src.spec.path.clone());
            let secure = is_https(&src.spec.uri);
            if let Some(token) = dispatch(host, src, now, secure, &authority, &path) {
                let deadline = now + src.spec.timeout_ms + CALL_GRACE_MS;
                self.calls.insert(token, (id, step, deadline));
            }
        }
    }

    /// The response to a key-set fetch this VM started.
    pub fn on_http_call_response(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        let Some((id, step, _)) = self.calls.remove(&token) else {
            return;
        };
        let now = host.now_ms();
        let Some(Some(src)) = self.remotes.get_mut(id) else {
            return;
        };
        let status = host
            .call_response_headers()
            .into_iter()
            .find(|(k, _)| k == ":status")
            .map(|(_, v)| v)
            .unwrap_or_default();
        if step == Step::Discovery {
            let issuer = src.spec.discovery_issuer.clone().unwrap_or_default();
            let found = response_body(host, &status, body_size, MAX_DISCOVERY_BYTES)
                .map_err(|why| format!("discovery: {why}"))
                .and_then(|body| {
                    parse_discovery(&body, &issuer, &src.spec.uri).map_err(|e| e.to_string())
                });
            match found {
                Ok(loc) => {
                    log::debug!(
                        "jwks {}: discovery names {}",
                        src.label,
                        log_safe(Some(&loc.uri))
                    );
                    let secure = is_https(&loc.uri);
                    if let Some(token) = dispatch(host, src, now, secure, &loc.authority, &loc.path)
                    {
                        let deadline = now + src.spec.timeout_ms + CALL_GRACE_MS;
                        self.calls.insert(token, (id, Step::Document, deadline));
                    }
                }
                Err(why) => {
                    src.warn(now, format_args!("{why}"));
                    record_failure(host, src, now);
                }
            }
            self.resume_ready(host, now);
            return;
        }
        let result = response_body(host, &status, body_size, src.max_bytes())
            .and_then(|body| src.parse(&body).map(|parsed| (body, parsed)));
        match result {
            Ok((body, parsed)) => {
                for skip in &parsed.skipped {
                    log::info!(
                        "jwks {}: key {} (kid {}) skipped: {}",
                        src.label,
                        skip.index,
                        log_safe(skip.kid.as_deref()),
                        skip.reason
                    );
                }
                let (current, cas) = read_meta(host, &src.meta_key);
                let next =
                    current.on_success(now, src.spec.cache_duration_seconds * 1000, jitter(now));
                let _ = host.set_shared(&src.doc_key, &encode_doc(next.doc_version, &body), None);
                if host.set_shared(&src.meta_key, &next.encode(), cas).is_err() {
                    // Another VM changed the record meanwhile; write ours unconditionally so
                    // the version matches the document just stored.
                    let _ = host.set_shared(&src.meta_key, &next.encode(), None);
                }
                let document = src.spec.document;
                host.increment_counter(&metrics::source(document, &src.label, "fetch_success"), 1);
                host.set_gauge(&metrics::source(document, &src.label, "stale_serving"), 0);
                host.set_gauge(
                    &metrics::source(document, &src.label, metrics::count_gauge(document)),
                    parsed.count as u64,
                );
                log::info!(
                    "{} {}: {} {} loaded, {} skipped (version {})",
                    src.kind(),
                    src.label,
                    parsed.count,
                    metrics::count_gauge(document),
                    parsed.skipped.len(),
                    next.doc_version
                );
                src.meta = next;
                src.installed = Some((next.doc_version, parsed.installed));
                if document == Document::Jwks {
                    self.cache.clear();
                }
            }
            Err(why) => {
                let keeping = if src.installed.is_some() {
                    "keeping the last good one"
                } else {
                    "none yet"
                };
                let cluster = src.spec.cluster.clone();
                src.warn(
                    now,
                    format_args!("fetch from cluster {cluster} failed: {why}; {keeping}"),
                );
                record_failure(host, src, now);
            }
        }
        self.resume_ready(host, now);
    }

    /// Decides paused requests whose key sets changed or whose deadline passed.
    fn resume_ready(&mut self, host: &dyn Host, now: u64) {
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            let changed = p
                .waiting_on
                .iter()
                .any(|(id, v)| self.installed_version(*id) != *v);
            let expired = now >= p.deadline_ms;
            if !(changed || expired) {
                self.pending.push(p);
                continue;
            }
            if !host.set_effective_context(p.context_id) {
                continue;
            }
            match self.handle(host, now, &p.waiting_on, expired) {
                Outcome::Allowed => {
                    host.resume_request();
                }
                // The local reply ends the stream; it is not resumed.
                Outcome::Denied => {
                    self.refused.push(p.context_id);
                }
                Outcome::Wait(waiting_on) => self.pending.push(Pending {
                    context_id: p.context_id,
                    deadline_ms: p.deadline_ms,
                    waiting_on,
                }),
            }
        }
    }
}

/// Reads the shared document and installs it if it parses. A document that does not parse
/// (it did when stored) leaves the installed one as it is.
fn install_from_shared(host: &dyn Host, src: &mut RemoteSource, now: u64) -> bool {
    let (raw, _) = host.get_shared(&src.doc_key);
    let Some((version, body)) = raw.as_deref().and_then(decode_doc) else {
        return false;
    };
    match src.parse(body) {
        Ok(parsed) => {
            log::debug!(
                "{} {}: installed version {version} ({} {})",
                src.kind(),
                src.label,
                parsed.count,
                metrics::count_gauge(src.spec.document)
            );
            src.installed = Some((version, parsed.installed));
            true
        }
        Err(e) => {
            src.warn(now, format_args!("shared copy unusable: {e}"));
            false
        }
    }
}

/// A source's shared lifecycle record and its CAS token (the default record when absent).
fn read_meta(host: &dyn Host, key: &str) -> (SharedMeta, Option<u32>) {
    let (raw, cas) = host.get_shared(key);
    (
        raw.as_deref()
            .and_then(SharedMeta::decode)
            .unwrap_or_default(),
        cas,
    )
}

/// The body of a key-set, revocation-list or discovery response: only a 200 within `max`
/// bytes.
fn response_body(
    host: &dyn Host,
    status: &str,
    size: usize,
    max: usize,
) -> Result<Vec<u8>, String> {
    if status != "200" {
        Err(format!(
            "status {}",
            if status.is_empty() { "none" } else { status }
        ))
    } else if size > max {
        Err(format!("body of {size} bytes is over {max}"))
    } else {
        Ok(host.call_response_body(size).unwrap_or_default())
    }
}

/// Starts a GET through the source's cluster; a refused dispatch counts as a failed fetch.
fn dispatch(
    host: &dyn Host,
    src: &mut RemoteSource,
    now: u64,
    secure: bool,
    authority: &str,
    path: &str,
) -> Option<u32> {
    // `:scheme` follows the URI: Envoy takes TLS from the cluster, but ngx_wasm_module only
    // uses TLS when the call says https.
    let headers = [
        (":method", "GET"),
        (":scheme", if secure { "https" } else { "http" }),
        (":path", path),
        (":authority", authority),
        (
            "accept",
            match src.spec.document {
                Document::Jwks => "application/json, application/jwk-set+json",
                Document::RevocationList => "application/json",
            },
        ),
    ];
    match host.dispatch_http_call(&src.spec.cluster, &headers, src.spec.timeout_ms) {
        Ok(token) => {
            log::debug!(
                "{} {}: fetching {authority}{} through {}",
                src.kind(),
                src.label,
                log_safe(Some(path)),
                src.spec.cluster
            );
            Some(token)
        }
        Err(why) => {
            let cluster = src.spec.cluster.clone();
            src.warn(now, format_args!("cannot call cluster {cluster}: {why}"));
            record_failure(host, src, now);
            None
        }
    }
}

fn record_failure(host: &dyn Host, src: &mut RemoteSource, now: u64) {
    let document = src.spec.document;
    host.increment_counter(&metrics::source(document, &src.label, "fetch_failed"), 1);
    if src.installed.is_some() {
        host.set_gauge(&metrics::source(document, &src.label, "stale_serving"), 1);
    }
    let (current, cas) = read_meta(host, &src.meta_key);
    let next = current.on_failure(now, jitter(now));
    if host.set_shared(&src.meta_key, &next.encode(), cas).is_err() {
        let _ = host.set_shared(&src.meta_key, &next.encode(), None);
    }
    src.meta = next;
}

/// True for an `https://` URI (any case).
fn is_https(uri: &str) -> bool {
    uri.get(..8)
        .is_some_and(|h| h.eq_ignore_ascii_case("https://"))
}

/// A random VM identity (std's hasher seeds come from the host's random source).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish().max(1)
}

/// A cheap jitter in `[0, 1)` from the clock's low bits (not security-relevant).
fn jitter(now_ms: u64) -> f64 {
    (now_ms.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0
}

/// Log text for an attacker-controlled value: printable ASCII only, at most 64 characters.
pub fn log_safe(v: Option<&str>) -> String {
    match v {
        None => "-".to_owned(),
        Some(s) => s
            .chars()
            .take(64)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect(),
    }
}
