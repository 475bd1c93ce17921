//! Key sources: remote key sets and revocation lists, fetched once per proxy and shared by
//! every VM. One job: turn events (a tick, a fetch's answer, a request that must wait, a
//! stream that ended) into commands (dispatch this call, decide these paused streams, empty
//! the token cache, count and log this) that the adapter carries out with host calls.
//!
//! The lifecycle of one source is [`lease::Lease`], a record in shared data that every VM
//! reads and writes only by compare-and-swap ([`SharedData`]); its states (Missing, Fetching,
//! Fresh, Stale, Backoff) and transitions are pure functions there. The records are bound to
//! this configuration ([`record`]). This engine owns the rest: who fetches (the lease), how a
//! fetched document is stored and installed, which paused requests to decide again.
//!
//! Commands carry where they must be carried out ([`Context`]): on Envoy every command runs
//! on the root context (a stream is addressed with `set_effective_context`). A host whose
//! `set_effective_context` does nothing and whose call answers go to the dispatching stream
//! (NGINX's ngx_wasm_module) needs the waiting stream to dispatch or join the call itself:
//! that is a `Dispatch { from: Context::Stream(id) }` and a `Decide` carried out inside that
//! stream's own callback, which this shape allows without changing the engine's state.

mod decide;
pub mod dpop_nonce;
pub mod dpop_replay;
pub mod lease;
pub mod memory;
pub mod record;

pub use decide::Retry;

use std::sync::Arc;

use log::Level;

use crate::authn::authenticate::{KeyLookup, KeyState, ListState};
use crate::authn::discovery::{parse_discovery, MAX_DISCOVERY_BYTES};
use crate::authn::jwk::{parse_jwks, JwksOptions, KeySet, SkippedKey, MAX_JWKS_BYTES};
use crate::authn::policy::{Document, JwksId, JwksSource, Policy, RemoteJwks};
use crate::authn::revocation::{parse_revocation_list, Revocation, MAX_REVOCATION_BYTES};
use crate::metrics;
use crate::time::{Millis, UnixMillis};
use lease::Lease;
use record::{Binding, DocRecord};

/// How long past a call's timeout the host's answer is still awaited.
pub const CALL_GRACE_MS: Millis = Millis(1_000);
/// The root context's tick period, set once: paused requests are decided, and a key set
/// fetched by another VM is picked up, within this time. (Set once because some hosts,
/// ngx_wasm_module among them, refuse a second `set_tick_period`.) A tick reads one small
/// shared-data record per key source.
pub const TICK_MS: Millis = Millis(100);
/// Compare-and-swap attempts for one transition before giving up until the next event.
const CAS_ATTEMPTS: usize = 4;

/// Warn lines about one source: a burst of this many, then one per [`WARN_REFILL_MS`]; lines
/// over the budget are counted and the count is reported with the next line written. (A
/// failed fetch is already paced by the backoff; this bounds what could repeat every tick,
/// per VM: an unusable shared copy, a shared-data write that keeps failing.)
pub const WARN_BURST: u32 = 5;
/// See [`WARN_BURST`].
pub const WARN_REFILL_MS: Millis = Millis(10_000);

/// A token bucket for one source's warn lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarnBudget {
    tokens: u32,
    refilled_at: UnixMillis,
    suppressed: u32,
}

impl Default for WarnBudget {
    fn default() -> WarnBudget {
        WarnBudget {
            tokens: WARN_BURST,
            refilled_at: UnixMillis::EPOCH,
            suppressed: 0,
        }
    }
}

impl WarnBudget {
    /// `Some(lines suppressed since the last one written)` when a line may be written at `now`.
    pub fn admit(&mut self, now: UnixMillis) -> Option<u32> {
        let earned =
            now.saturating_since(self.refilled_at).as_millis() / WARN_REFILL_MS.as_millis();
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

/// Why a shared-data write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Another VM wrote first.
    CasMismatch,
    /// Any other host refusal.
    Other,
}

/// Shared data as the engine uses it: a read returns the value and its CAS token, and every
/// write is a compare-and-swap against the token of the read it was computed from. (`None`:
/// the record was absent at that read. proxy-wasm hosts cannot make the creation of a record
/// conditional, so the engine reads a record it created back before acting on it.)
pub trait SharedData {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn compare_and_swap(&self, key: &str, value: &[u8], cas: Option<u32>)
        -> Result<(), WriteError>;
}

/// Where a command is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// The root context (Envoy: every key-source call, answered to the root).
    Root,
    /// A stream's own context (for hosts that answer a call to the stream that made it).
    Stream(u32),
}

/// Which document a call fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The OIDC discovery document (then the key set it names).
    Discovery,
    /// The source's document: the key set or the revocation list.
    Document,
}

/// An HTTP GET to start for a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    pub source: JwksId,
    pub step: Step,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    /// `:scheme` follows the URI: Envoy takes TLS from the cluster, but ngx_wasm_module only
    /// uses TLS when the call says https.
    pub secure: bool,
    pub document: Document,
    pub timeout_ms: Millis,
}

impl CallRequest {
    /// The request headers.
    pub fn headers(&self) -> [(&str, &str); 5] {
        [
            (":method", "GET"),
            (":scheme", if self.secure { "https" } else { "http" }),
            (":path", &self.path),
            (":authority", &self.authority),
            (
                "accept",
                match self.document {
                    Document::Jwks => "application/json, application/jwk-set+json",
                    Document::RevocationList => "application/json",
                },
            ),
        ]
    }
}

/// What the adapter must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start this call; report the outcome with [`Sources::dispatched`].
    Dispatch {
        from: Context,
        call: CallRequest,
    },
    /// Decide paused stream `stream` again (it left the waiting list): with `last_chance`,
    /// missing keys are unavailable; `waited` are the sources it already waited for.
    /// Waiting again keeps `deadline_ms`.
    Decide {
        stream: u32,
        waited: Vec<JwksId>,
        last_chance: bool,
        deadline_ms: UnixMillis,
    },
    /// A key set changed: verified tokens are only as good as the keys that verified them.
    ClearTokenCache,
    Counter(String, i64),
    Gauge(String, u64),
    Log(Level, String),
}

/// The answer to [`Sources::wait`].
#[derive(Debug, PartialEq)]
pub enum Waiting {
    /// The stream waits; carry these out.
    Paused(Vec<Command>),
    /// No fetch is coming for these sources (an unknown `kid` that cannot be refetched now):
    /// decide again at once, with them counted as waited for.
    DecideNow(Vec<JwksId>),
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

/// One VM's view of one remote source.
#[derive(Debug)]
struct Source {
    spec: RemoteJwks,
    /// A provider that uses this source: names it in logs and metrics.
    label: String,
    meta_key: String,
    doc_key: String,
    /// The last shared record this VM read (or wrote).
    meta: Lease,
    /// The installed document and the version it came from.
    installed: Option<(u64, Installed)>,
    warns: WarnBudget,
}

impl Source {
    fn version(&self) -> u64 {
        self.installed.as_ref().map_or(0, |(v, _)| *v)
    }

    /// The installed document, if it may still be used at `now`.
    fn usable(&self, now: UnixMillis) -> Option<&Installed> {
        let (_, doc) = self.installed.as_ref()?;
        self.meta
            .keys_usable(now, self.spec.cache_duration, self.spec.max_stale_ms)
            .then_some(doc)
    }

    fn kind(&self) -> &'static str {
        self.spec.document.label()
    }

    /// The issuer a discovery document of this source is checked against ("" without).
    fn issuer(&self) -> &str {
        self.spec.discovery_issuer.as_deref().unwrap_or("")
    }

    fn max_bytes(&self) -> usize {
        match self.spec.document {
            Document::Jwks => MAX_JWKS_BYTES,
            Document::RevocationList => MAX_REVOCATION_BYTES,
        }
    }

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

    fn metric(&self, event: &str) -> String {
        metrics::source(self.spec.document, &self.label, event)
    }
}

/// A request paused until a source changes.
#[derive(Debug, Clone)]
struct Pending {
    stream: u32,
    deadline_ms: UnixMillis,
    /// Per source: installed version and fetch generation when the request paused.
    waiting_on: Vec<(JwksId, u64, u64)>,
}

/// The key sources of one VM.
#[derive(Debug)]
pub struct Sources {
    binding: Binding,
    /// Indexed like `policy.jwks_sources`; `None` for local sources.
    remotes: Vec<Option<Source>>,
    pending: Vec<Pending>,
    /// Streams answered with a local reply. With `pending`, the streams whose body and
    /// trailers must never be let through: a host that delivers body callbacks while the
    /// headers are paused (Envoy with `allow_on_headers_stop_iteration`, hosts without
    /// cpp-host's StopIteration -> StopAllIteration conversion) would otherwise forward
    /// headers and body when the body callback answers `Continue`.
    /// (A short list: a refused stream ends right after its local reply.)
    refused: Vec<u32>,
    /// In-flight calls, sorted by token: (token, source, step, time by which the host must
    /// have answered). A handful at most: a sorted `Vec`, not a `BTreeMap`, which cost Wasm
    /// size for its own instantiation (issue #5's 1 MiB limit).
    calls: Vec<(u32, JwksId, Step, UnixMillis)>,
    /// This VM's identity as a lease holder.
    vm_id: u64,
    /// Commands of the event being handled.
    out: Vec<Command>,
}

/// The key view a request decision uses.
pub struct Keys<'a> {
    sources: &'a Sources,
    policy: &'a Policy,
    now_ms: UnixMillis,
    /// Last chance: nothing is pending any more, missing keys are unavailable.
    last_chance: bool,
    /// Sources the request already waited for: a refetch is only worth waiting for once.
    waited: &'a [JwksId],
}

impl KeyLookup for Keys<'_> {
    fn keys(&self, id: JwksId) -> KeyState<'_> {
        match self.policy.jwks_sources.get(id) {
            Some(JwksSource::Local(keys)) => KeyState::Ready(keys),
            Some(JwksSource::Remote(spec)) => match self.sources.remote(id) {
                None => KeyState::Unavailable,
                Some(src) => match src.usable(self.now_ms) {
                    Some(Installed::Keys(keys)) => KeyState::Ready(keys),
                    _ if self.last_chance || spec.document != Document::Jwks => {
                        KeyState::Unavailable
                    }
                    _ => KeyState::Pending,
                },
            },
            None => KeyState::Unavailable,
        }
    }

    fn revocation_list(&self, id: JwksId) -> ListState<'_> {
        let Some(src) = self.sources.remote(id) else {
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

    /// Worth asking whenever the request has not waited for this source yet: whether a
    /// fetch is under way, a newer version is in shared data, or a refetch may start is
    /// read from shared data when the request pauses ([`Sources::wait`]), not from this
    /// VM's copy, which can be a tick old (issue 15: rotation).
    fn may_refetch(&self, id: JwksId) -> bool {
        !self.last_chance && !self.waited.contains(&id) && self.sources.remote(id).is_some()
    }
}

impl Sources {
    /// The remote sources of `policy`, bound to the configuration text `config`. Nothing is
    /// fetched until the first tick.
    pub fn new(policy: &Policy, config: &[u8], vm_id: u64) -> Sources {
        let binding = Binding::new(config);
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
                    let base = binding.name(spec);
                    Some(Source {
                        spec: spec.clone(),
                        label,
                        meta_key: format!("{base}/meta"),
                        doc_key: format!("{base}/doc"),
                        meta: Lease::default(),
                        installed: None,
                        warns: WarnBudget::default(),
                    })
                }
            })
            .collect();
        Sources {
            binding,
            remotes,
            pending: Vec::new(),
            refused: Vec::new(),
            calls: Vec::new(),
            vm_id,
            out: Vec::new(),
        }
    }

    fn remote(&self, id: JwksId) -> Option<&Source> {
        self.remotes.get(id).and_then(Option::as_ref)
    }

    /// The key view for one decision.
    pub fn lookup<'a>(
        &'a self,
        policy: &'a Policy,
        now_ms: UnixMillis,
        waited: &'a [JwksId],
        last_chance: bool,
    ) -> Keys<'a> {
        Keys {
            sources: self,
            policy,
            now_ms,
            last_chance,
            waited,
        }
    }

    /// Creates every source's lifecycle record that does not exist yet, when the VM is
    /// configured: Envoy's shared data has no create-if-absent, so two VMs whose first ticks
    /// both found no record could each write one, each read its own back, and both fetch.
    /// With the record in place before the first tick, starting a fetch is always a
    /// compare-and-swap on it, which only one VM wins. (Creating it can still race, but only
    /// with another VM's creation, both writing the same empty record.)
    pub fn seed(&self, store: &dyn SharedData) {
        for src in self.remotes.iter().flatten() {
            if store.read(&src.meta_key).0.is_some() {
                continue;
            }
            let sealed = self.binding.seal(&src.meta_key, &Lease::default().encode());
            // A host that refuses the write now leaves creation to the first tick.
            let _ = store.compare_and_swap(&src.meta_key, &sealed, None);
        }
    }

    /// The shared-data name of source `id`'s lifecycle record.
    pub fn meta_key(&self, id: JwksId) -> Option<&str> {
        self.remote(id).map(|s| s.meta_key.as_str())
    }

    /// Number of paused requests.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// True when the body and trailers of `stream` must be held: it waits, or was refused.
    pub fn holds(&self, stream: u32) -> bool {
        self.refused.contains(&stream) || self.pending.iter().any(|p| p.stream == stream)
    }

    /// `stream` was answered with a local reply.
    pub fn refused(&mut self, stream: u32) {
        self.refused.push(stream);
    }

    /// A stream ended: it must never be decided again.
    pub fn stream_done(&mut self, stream: u32) {
        self.pending.retain(|p| p.stream != stream);
        self.refused.retain(|id| *id != stream);
    }

    fn log(&mut self, level: Level, text: String) {
        self.out.push(Command::Log(level, text));
    }

    /// A warn line about source `id`, within its budget.
    #[inline(never)]
    fn warn(&mut self, id: JwksId, now: UnixMillis, message: std::fmt::Arguments<'_>) {
        let Some(Some(src)) = self.remotes.get_mut(id) else {
            return;
        };
        if let Some(suppressed) = src.warns.admit(now) {
            let note = if suppressed > 0 {
                format!(" ({suppressed} similar lines suppressed)")
            } else {
                String::new()
            };
            let line = format!("{} {}: {message}{note}", src.kind(), src.label);
            self.log(Level::Warn, line);
        }
    }

    /// A source's lifecycle record (default when absent or not written under this
    /// configuration) and its CAS token.
    #[inline(never)]
    fn read_lease(&self, store: &dyn SharedData, id: JwksId) -> Option<(Lease, Option<u32>, bool)> {
        let src = self.remote(id)?;
        let (raw, cas) = store.read(&src.meta_key);
        let Some(raw) = raw else {
            return Some((Lease::default(), cas, true));
        };
        match self
            .binding
            .open(&src.meta_key, &raw)
            .and_then(Lease::decode)
        {
            Some(lease) => Some((lease, cas, true)),
            None => Some((Lease::default(), cas, false)),
        }
    }

    /// Writes `lease` by CAS; on success it is this VM's copy.
    #[inline(never)]
    fn write_lease(
        &mut self,
        store: &dyn SharedData,
        id: JwksId,
        lease: Lease,
        cas: Option<u32>,
    ) -> Result<(), WriteError> {
        let Some(Some(src)) = self.remotes.get_mut(id) else {
            return Err(WriteError::Other);
        };
        let sealed = self.binding.seal(&src.meta_key, &lease.encode());
        store.compare_and_swap(&src.meta_key, &sealed, cas)?;
        src.meta = lease;
        Ok(())
    }

    /// Applies `transition` to the current record by CAS, retrying on races. `transition`
    /// returns `None` when there is nothing (more) to write.
    #[inline(never)]
    fn update_lease(
        &mut self,
        store: &dyn SharedData,
        id: JwksId,
        transition: &dyn Fn(&Lease) -> Option<Lease>,
    ) -> Option<Lease> {
        for _ in 0..CAS_ATTEMPTS {
            let (current, cas, _) = self.read_lease(store, id)?;
            let next = transition(&current)?;
            match self.write_lease(store, id, next, cas) {
                Ok(()) => return Some(next),
                Err(WriteError::CasMismatch) => continue,
                Err(WriteError::Other) => return None,
            }
        }
        None
    }

    /// The root context's tick: install newer documents from shared data, keep the leases
    /// of this VM's fetches, start due fetches, decide paused requests whose sources changed
    /// or whose time is up.
    #[inline(never)]
    pub fn tick(&mut self, now: UnixMillis, store: &dyn SharedData) -> Vec<Command> {
        self.sync(now, store);
        self.renew_leases(now, store);
        self.start_due_fetches(now, store);
        self.resume_ready(now);
        std::mem::take(&mut self.out)
    }

    #[inline(never)]
    fn sync(&mut self, now: UnixMillis, store: &dyn SharedData) {
        for id in 0..self.remotes.len() {
            let Some((lease, _, genuine)) = self.read_lease(store, id) else {
                continue;
            };
            if !genuine {
                self.warn(
                    id,
                    now,
                    format_args!("shared record not written under this configuration; ignored"),
                );
                continue;
            }
            if let Some(Some(src)) = self.remotes.get_mut(id) {
                src.meta = lease;
                if lease.doc_version > src.version() {
                    self.install_from_shared(id, now, store, &lease);
                }
            }
        }
    }

    /// Installs the shared document that `lease` names, if it is that document and parses.
    #[inline(never)]
    fn install_from_shared(
        &mut self,
        id: JwksId,
        now: UnixMillis,
        store: &dyn SharedData,
        lease: &Lease,
    ) {
        let Some(src) = self.remote(id) else {
            return;
        };
        let (raw, _) = store.read(&src.doc_key);
        let checked = match raw.as_deref().and_then(DocRecord::decode) {
            None => Err("missing or malformed".to_owned()),
            // Written for the next version, whose record is not committed yet: next tick.
            Some(doc) if doc.version != lease.doc_version => return,
            Some(doc) if doc.issuer != src.issuer() => {
                Err("checked against another issuer".to_owned())
            }
            Some(doc) if doc.digest() != lease.doc_digest => {
                Err("not the document its version names".to_owned())
            }
            Some(doc) => src.parse(doc.body),
        };
        match checked {
            Ok(parsed) => {
                let line = format!(
                    "{} {}: installed version {} ({} {})",
                    src.kind(),
                    src.label,
                    lease.doc_version,
                    parsed.count,
                    metrics::count_gauge(src.spec.document)
                );
                let document = src.spec.document;
                self.log(Level::Debug, line);
                if let Some(Some(src)) = self.remotes.get_mut(id) {
                    src.installed = Some((lease.doc_version, parsed.installed));
                }
                if document == Document::Jwks {
                    self.out.push(Command::ClearTokenCache);
                }
            }
            Err(e) => self.warn(id, now, format_args!("shared copy unusable: {e}")),
        }
    }

    /// Keeps the lease of every source this VM is fetching, so that no other VM starts a
    /// second fetch, and so that the lease lapses quickly if this VM goes away.
    #[inline(never)]
    fn renew_leases(&mut self, now: UnixMillis, store: &dyn SharedData) {
        // A call the host never answered (its VM's callbacks went elsewhere) is given up
        // after its timeout: the lease is released so that another VM fetches.
        let overdue: Vec<u32> = self
            .calls
            .iter()
            .filter(|(_, _, _, deadline)| now > *deadline)
            .map(|(token, _, _, _)| *token)
            .collect();
        let vm = self.vm_id;
        for token in overdue {
            let Some((id, _, _)) = self.take_call(token) else {
                continue;
            };
            self.update_lease(store, id, &|l| (l.holder == vm).then(|| l.release()));
            self.warn(
                id,
                now,
                format_args!("fetch got no answer in time; released"),
            );
        }
        // Sorted and deduplicated: each source once, in id order.
        let mut fetching: Vec<JwksId> = self.calls.iter().map(|(_, id, _, _)| *id).collect();
        fetching.sort_unstable();
        fetching.dedup();
        for id in fetching {
            self.update_lease(store, id, &|l| l.renew(now, vm));
        }
    }

    /// True when requests of this VM wait for source `id` and it has nothing usable.
    fn starved(&self, id: JwksId, now: UnixMillis) -> bool {
        self.remote(id).is_some_and(|s| s.usable(now).is_none())
            && self
                .pending
                .iter()
                .any(|p| p.waiting_on.iter().any(|(w, _, _)| *w == id))
    }

    /// Takes the fetch lease (CAS) for every due source and asks for the fetch.
    #[inline(never)]
    fn start_due_fetches(&mut self, now: UnixMillis, store: &dyn SharedData) {
        for id in 0..self.remotes.len() {
            let starved = self.starved(id, now);
            let Some(src) = self.remote(id) else { continue };
            if !src.meta.fetch_due(now, starved) {
                continue;
            }
            let Some((current, cas, _)) = self.read_lease(store, id) else {
                continue;
            };
            if !current.fetch_due(now, starved) {
                if let Some(Some(src)) = self.remotes.get_mut(id) {
                    src.meta = current;
                }
                continue;
            }
            match self.write_lease(store, id, current.begin_fetch(now, self.vm_id), cas) {
                Ok(()) => {}
                Err(WriteError::CasMismatch) => continue,
                Err(WriteError::Other) => {
                    self.warn(id, now, format_args!("cannot write shared data"));
                    continue;
                }
            }
            if cas.is_none() {
                // The record was created just now; creation cannot be conditional, so make
                // sure no other VM created it at the same time.
                match self.read_lease(store, id) {
                    Some((back, _, true)) if back.holder == self.vm_id => {}
                    _ => continue,
                }
            }
            let Some(src) = self.remote(id) else { continue };
            let (step, authority, path, uri) = if src.spec.discovery_issuer.is_some() {
                (
                    Step::Discovery,
                    &src.spec.authority,
                    &src.spec.path,
                    &src.spec.uri,
                )
            } else {
                (
                    Step::Document,
                    &src.spec.authority,
                    &src.spec.path,
                    &src.spec.uri,
                )
            };
            let call = CallRequest {
                source: id,
                step,
                cluster: src.spec.cluster.clone(),
                authority: authority.clone(),
                path: path.clone(),
                secure: is_https(uri),
                document: src.spec.document,
                timeout_ms: src.spec.timeout_ms,
            };
            self.out.push(Command::Dispatch {
                from: Context::Root,
                call,
            });
        }
    }

    /// The outcome of a [`Command::Dispatch`]: the host's call token, or why it refused.
    #[inline(never)]
    pub fn dispatched(
        &mut self,
        now: UnixMillis,
        store: &dyn SharedData,
        call: &CallRequest,
        result: Result<u32, String>,
    ) -> Vec<Command> {
        let id = call.source;
        match result {
            Ok(token) => {
                if let Some(src) = self.remote(id) {
                    let line = format!(
                        "{} {}: fetching {}{} through {}",
                        src.kind(),
                        src.label,
                        call.authority,
                        log_safe(Some(&call.path)),
                        call.cluster
                    );
                    let deadline = now + src.spec.timeout_ms + CALL_GRACE_MS;
                    self.log(Level::Debug, line);
                    let entry = (token, id, call.step, deadline);
                    match self.calls.binary_search_by_key(&token, |c| c.0) {
                        Ok(i) => {
                            if let Some(c) = self.calls.get_mut(i) {
                                *c = entry;
                            }
                        }
                        Err(i) => self.calls.insert(i, entry),
                    }
                }
            }
            Err(why) => {
                let cluster = &call.cluster;
                self.warn(
                    id,
                    now,
                    format_args!("cannot call cluster {cluster}: {why}"),
                );
                self.record_failure(id, now, store);
                self.resume_ready(now);
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Removes in-flight call `token`: its (source, step, deadline), `None` if not ours.
    fn take_call(&mut self, token: u32) -> Option<(JwksId, Step, UnixMillis)> {
        let i = self.calls.binary_search_by_key(&token, |c| c.0).ok()?;
        let (_, id, step, deadline) = self.calls.remove(i);
        Some((id, step, deadline))
    }

    /// The largest body worth reading for call `token` (`None`: not a call of ours).
    pub fn answer_limit(&self, token: u32) -> Option<usize> {
        let i = self.calls.binary_search_by_key(&token, |c| c.0).ok()?;
        let (_, id, step, _) = self.calls.get(i)?;
        self.answer_limit_of(*id, *step)
    }

    /// True when the body of the answer to call `token` is worth reading: a call of ours,
    /// status 200, and within [`answer_limit`](Self::answer_limit).
    pub fn body_wanted(&self, token: u32, status: &str, body_size: usize) -> bool {
        status == "200" && self.answer_limit(token).is_some_and(|max| body_size <= max)
    }

    /// The answer to call `token`: its `:status`, its body's size, and the body when the
    /// status is 200 and the size within [`answer_limit`](Self::answer_limit).
    #[inline(never)]
    pub fn answer(
        &mut self,
        now: UnixMillis,
        store: &dyn SharedData,
        token: u32,
        status: &str,
        body_size: usize,
        body: Option<Vec<u8>>,
    ) -> Vec<Command> {
        let Some((id, step, _)) = self.take_call(token) else {
            return Vec::new();
        };
        let Some(max) = self.answer_limit_of(id, step) else {
            return Vec::new();
        };
        let body = if status != "200" {
            Err(format!(
                "status {}",
                if status.is_empty() { "none" } else { status }
            ))
        } else if body_size > max {
            Err(format!("body of {body_size} bytes is over {max}"))
        } else {
            Ok(body.unwrap_or_default())
        };
        match step {
            Step::Discovery => self.discovered(id, now, store, body),
            Step::Document => self.fetched(id, now, store, body),
        }
        self.resume_ready(now);
        std::mem::take(&mut self.out)
    }

    fn answer_limit_of(&self, id: JwksId, step: Step) -> Option<usize> {
        match step {
            Step::Discovery => Some(MAX_DISCOVERY_BYTES),
            Step::Document => self.remote(id).map(Source::max_bytes),
        }
    }

    #[inline(never)]
    fn discovered(
        &mut self,
        id: JwksId,
        now: UnixMillis,
        store: &dyn SharedData,
        body: Result<Vec<u8>, String>,
    ) {
        let Some(src) = self.remote(id) else { return };
        let found = body
            .map_err(|why| format!("discovery: {why}"))
            .and_then(|body| {
                parse_discovery(&body, src.issuer(), &src.spec.uri).map_err(|e| e.to_string())
            });
        match found {
            Ok(loc) => {
                let line = format!(
                    "jwks {}: discovery names {}",
                    src.label,
                    log_safe(Some(&loc.uri))
                );
                let call = CallRequest {
                    source: id,
                    step: Step::Document,
                    cluster: src.spec.cluster.clone(),
                    secure: is_https(&loc.uri),
                    authority: loc.authority,
                    path: loc.path,
                    document: src.spec.document,
                    timeout_ms: src.spec.timeout_ms,
                };
                self.log(Level::Debug, line);
                self.out.push(Command::Dispatch {
                    from: Context::Root,
                    call,
                });
            }
            Err(why) => {
                self.warn(id, now, format_args!("{why}"));
                self.record_failure(id, now, store);
            }
        }
    }

    #[inline(never)]
    fn fetched(
        &mut self,
        id: JwksId,
        now: UnixMillis,
        store: &dyn SharedData,
        body: Result<Vec<u8>, String>,
    ) {
        let Some(src) = self.remote(id) else { return };
        let parsed = body.and_then(|body| src.parse(&body).map(|parsed| (body, parsed)));
        let (body, parsed) = match parsed {
            Ok(ok) => ok,
            Err(why) => {
                let keeping = if src.installed.is_some() {
                    "keeping the last good one"
                } else {
                    "none yet"
                };
                let cluster = src.spec.cluster.clone();
                self.warn(
                    id,
                    now,
                    format_args!("fetch from cluster {cluster} failed: {why}; {keeping}"),
                );
                self.record_failure(id, now, store);
                return;
            }
        };
        let label = src.label.clone();
        for skip in &parsed.skipped {
            let line = format!(
                "jwks {label}: key {} (kid {}) skipped: {}",
                skip.index,
                log_safe(skip.kid.as_deref()),
                skip.reason
            );
            self.log(Level::Info, line);
        }
        let Some(committed) = self.store_document(id, now, store, &body) else {
            return;
        };
        let Some(Some(src)) = self.remotes.get_mut(id) else {
            return;
        };
        let document = src.spec.document;
        let changed = committed.doc_version != src.version();
        let count = parsed.count;
        let line = if changed {
            format!(
                "{} {}: {} {} loaded, {} skipped (version {})",
                src.kind(),
                src.label,
                count,
                metrics::count_gauge(document),
                parsed.skipped.len(),
                committed.doc_version
            )
        } else {
            format!(
                "{} {}: unchanged (version {})",
                src.kind(),
                src.label,
                committed.doc_version
            )
        };
        if changed {
            src.installed = Some((committed.doc_version, parsed.installed));
        }
        let (success, stale, gauge) = (
            src.metric("fetch_success"),
            src.metric("stale_serving"),
            src.metric(metrics::count_gauge(document)),
        );
        self.out.push(Command::Counter(success, 1));
        self.out.push(Command::Gauge(stale, 0));
        self.out.push(Command::Gauge(gauge, count as u64));
        self.log(Level::Info, line);
        if changed && document == Document::Jwks {
            self.out.push(Command::ClearTokenCache);
        }
    }

    /// Stores a fetched document and commits it in the lifecycle record, both by CAS, if
    /// this VM still holds the lease (an answer that comes after the lease passed on is
    /// older than what another VM may have stored: it is dropped). The same document as the
    /// stored one keeps its version and is not written again. Returns the committed record.
    #[inline(never)]
    fn store_document(
        &mut self,
        id: JwksId,
        now: UnixMillis,
        store: &dyn SharedData,
        body: &[u8],
    ) -> Option<Lease> {
        let src = self.remote(id)?;
        let (doc_key, cache_duration) = (src.doc_key.clone(), src.spec.cache_duration);
        let issuer = src.issuer().to_owned();
        let digest = DocRecord {
            version: 0,
            issuer: &issuer,
            body,
        }
        .digest();
        for _ in 0..CAS_ATTEMPTS {
            let (current, cas, _) = self.read_lease(store, id)?;
            if current.holder != self.vm_id {
                self.warn(
                    id,
                    now,
                    format_args!("answer came after the fetch lease passed on; dropped"),
                );
                return None;
            }
            let next = current.on_success(now, cache_duration, jitter(now), digest);
            if next.doc_version != current.doc_version {
                let (_, doc_cas) = store.read(&doc_key);
                let doc = DocRecord {
                    version: next.doc_version,
                    issuer: &issuer,
                    body,
                };
                match store.compare_and_swap(&doc_key, &doc.encode(), doc_cas) {
                    Ok(()) => {}
                    Err(WriteError::CasMismatch) => continue,
                    Err(WriteError::Other) => break,
                }
            }
            match self.write_lease(store, id, next, cas) {
                Ok(()) => return Some(next),
                Err(WriteError::CasMismatch) => continue,
                Err(WriteError::Other) => break,
            }
        }
        self.warn(id, now, format_args!("cannot write shared data"));
        None
    }

    /// A failed fetch: counted, and the backoff recorded (only by the lease holder: a late
    /// failure must not overwrite another VM's fetch).
    #[inline(never)]
    fn record_failure(&mut self, id: JwksId, now: UnixMillis, store: &dyn SharedData) {
        let Some(src) = self.remote(id) else { return };
        let failed = src.metric("fetch_failed");
        let stale = src.installed.is_some().then(|| src.metric("stale_serving"));
        self.out.push(Command::Counter(failed, 1));
        if let Some(stale) = stale {
            self.out.push(Command::Gauge(stale, 1));
        }
        let vm = self.vm_id;
        let jitter = jitter(now);
        self.update_lease(store, id, &|l| {
            (l.holder == vm).then(|| l.on_failure(now, jitter))
        });
    }

    /// Stream `stream` must wait for sources `ids` (a decision said so). A source with usable
    /// keys is waited for only when a fetch is under way or due, a newer version is in shared
    /// data, or an early refetch may be requested now (and then is); `deadline`: the one of
    /// an earlier wait (`None`: a new wait, `request_wait_timeout` from now).
    #[inline(never)]
    pub fn wait(
        &mut self,
        now: UnixMillis,
        store: &dyn SharedData,
        stream: u32,
        ids: Vec<JwksId>,
        deadline: Option<UnixMillis>,
    ) -> Waiting {
        let mut hopeless = Vec::new();
        for &id in &ids {
            // The generation to wake on is the one in shared data now, not this VM's copy.
            if let Some((lease, _, true)) = self.read_lease(store, id) {
                if let Some(Some(src)) = self.remotes.get_mut(id) {
                    src.meta = lease;
                }
            }
            let has_keys = self
                .remote(id)
                .is_some_and(|s| s.spec.document == Document::Jwks && s.usable(now).is_some());
            if has_keys && !self.refetch_coming(id, now, store) {
                hopeless.push(id);
            }
        }
        if !hopeless.is_empty() {
            self.out.clear();
            return Waiting::DecideNow(hopeless);
        }
        let deadline_ms = deadline.unwrap_or_else(|| {
            now + ids
                .iter()
                .filter_map(|id| self.remote(*id).map(|s| s.spec.wait_timeout_ms))
                .max()
                .unwrap_or(Millis::ZERO)
        });
        if deadline.is_none() {
            self.out
                .push(Command::Counter(metrics::PAUSED.to_owned(), 1));
        }
        let waiting_on = ids
            .iter()
            .filter_map(|&id| {
                let s = self.remote(id)?;
                Some((id, s.version(), s.meta.generation))
            })
            .collect();
        self.pending.push(Pending {
            stream,
            deadline_ms,
            waiting_on,
        });
        Waiting::Paused(std::mem::take(&mut self.out))
    }

    /// Reads the shared record: is a newer key set there or on its way? If not, requests an
    /// early refetch (rate-limited across every VM).
    #[inline(never)]
    fn refetch_coming(&mut self, id: JwksId, now: UnixMillis, store: &dyn SharedData) -> bool {
        let Some(interval) = self.remote(id).map(|s| s.spec.refetch_interval_ms) else {
            return false;
        };
        for _ in 0..CAS_ATTEMPTS {
            let Some((current, cas, true)) = self.read_lease(store, id) else {
                return false;
            };
            let Some(Some(src)) = self.remotes.get_mut(id) else {
                return false;
            };
            src.meta = current;
            if current.doc_version > src.version() || current.fetch_coming(now) {
                return true;
            }
            let Some(next) = current.request_refetch(now, interval) else {
                return false;
            };
            match self.write_lease(store, id, next, cas) {
                Ok(()) => {
                    let label = self.remote(id).map_or("", |s| s.label.as_str());
                    let line = format!("jwks {label}: unknown kid, refetching early");
                    self.log(Level::Info, line);
                    return true;
                }
                Err(WriteError::CasMismatch) => continue,
                Err(WriteError::Other) => return false,
            }
        }
        false
    }

    /// Asks for paused requests whose sources changed (a new version, or a fetch finished)
    /// or whose deadline passed to be decided again.
    #[inline(never)]
    fn resume_ready(&mut self, now: UnixMillis) {
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            let changed = p.waiting_on.iter().any(|(id, v, g)| {
                self.remote(*id)
                    .is_some_and(|s| s.version() != *v || s.meta.generation != *g)
            });
            let expired = now >= p.deadline_ms;
            if !(changed || expired) {
                self.pending.push(p);
                continue;
            }
            self.out.push(Command::Decide {
                stream: p.stream,
                waited: p.waiting_on.iter().map(|(id, _, _)| *id).collect(),
                last_chance: expired,
                deadline_ms: p.deadline_ms,
            });
        }
    }
}

/// True for an `https://` URI (any case).
fn is_https(uri: &str) -> bool {
    uri.get(..8)
        .is_some_and(|h| h.eq_ignore_ascii_case("https://"))
}

/// A cheap jitter in `[0, 1)` from the clock's low bits (not security-relevant).
fn jitter(now: UnixMillis) -> f64 {
    (now.as_millis().wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0
}

/// A random VM identity, never 0 (0 is "no holder" in a lease).
pub fn random_id() -> u64 {
    random_u64().max(1)
}

/// 64 random bits: std's `RandomState` keys (128 bits from the host's `random_get` on
/// wasm32-wasip1, the OS elsewhere; each new `RandomState` of a thread steps the key) read
/// through SipHash, a PRF under those keys.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

/// Log text for an attacker-controlled value: printable ASCII only, at most 64 characters.
pub fn log_safe(v: Option<&str>) -> String {
    crate::authn::outcome::Safe(v).to_string()
}

#[cfg(test)]
mod tests;
