//! The ablation ladder of `make bench-ladder`: the cache-hit path of a jwt-edge request, built
//! up one step at a time from the library's own pieces, so that Envoy's CPU per request can be
//! measured after each step and every µs above the do-nothing floor gets a name.
//!
//! The rung is chosen by the VM's environment (`JWT_EDGE_BENCH=ladder:<rung>`, set in
//! `vm_config.environment_variables`), the plugin configuration is jwt-edge's own provider
//! JSON. Each rung does everything the rungs before it do, plus one step:
//!
//! | rung        | adds                                                                     |
//! |-------------|--------------------------------------------------------------------------|
//! | `floor`     | nothing: this 1 MiB module's callback returns `Continue` (vs the tiny noop) |
//! | `clock`     | `Host::now_ms` (one host call)                                           |
//! | `headers`   | `Host::read_request_headers` (all request headers into the kept strings) |
//! | `extract`   | `RequestView`, `requirement_for`, `extract` (the token located and copied) |
//! | `cache`     | `TokenCache::get`, a hit (misses verify and fill the cache)              |
//! | `decide`    | `decide_cached` in place of the two steps above: claims, identities, the header list |
//! | `write`     | the `Allow`'s header changes: remove `authorization`, add `x-jwt-sub`    |
//! | `counters`  | the counters `FilterState::handle` increments on an accepted cache hit   |
//!
//! `JWT_EDGE_BENCH=jwt-edge` keeps jwt-edge's own root context (the shipped filter's code,
//! in this module), and four side rungs time one host call alone on top of `floor`:
//! `remove` (remove `authorization`), `set` (set `x-jwt-sub`), `add` (add `x-jwt-sub`, which
//! the request does not carry), `get` (read `authorization`).

use std::hint::black_box;
use std::rc::Rc;

use jwt_edge::authn::authenticate::{
    decide_cached, requirement_for, Decision, KeyLookup, KeyState,
};
use jwt_edge::authn::config;
use jwt_edge::authn::extract::extract;
use jwt_edge::authn::jws::UntrustedToken;
use jwt_edge::authn::policy::Policy;
use jwt_edge::authn::request::RequestView;
use jwt_edge::authn::token_cache::TokenCache;
use jwt_edge::filter::metrics;
use jwt_edge::filter::proxy::ProxyHost;
use jwt_edge::filter::Host;
use jwt_edge::time::UnixMillis;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

use crate::LocalKeys;

/// One step of the ladder; each includes the ones before it (side rungs excepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rung {
    Floor,
    Clock,
    Headers,
    Extract,
    Cache,
    Decide,
    Write,
    Counters,
    /// Side rungs: `floor` plus one host call.
    Remove,
    Set,
    Add,
    Get,
}

impl Rung {
    pub fn parse(name: &str) -> Option<Rung> {
        Some(match name {
            "floor" => Rung::Floor,
            "clock" => Rung::Clock,
            "headers" => Rung::Headers,
            "extract" => Rung::Extract,
            "cache" => Rung::Cache,
            "decide" => Rung::Decide,
            "write" => Rung::Write,
            "counters" => Rung::Counters,
            "remove" => Rung::Remove,
            "set" => Rung::Set,
            "add" => Rung::Add,
            "get" => Rung::Get,
            _ => return None,
        })
    }
}

thread_local! {
    /// The rung named by the environment, read once in `main` (the SDK's root-context
    /// constructor is a plain `fn`: it cannot capture it).
    pub static RUNG: std::cell::Cell<Option<Rung>> = const { std::cell::Cell::new(None) };
}

/// What a rung needs from the configuration.
struct Ladder {
    policy: Policy,
    cache: TokenCache,
    allowed_metrics: Vec<String>,
    /// The request headers, kept between requests as `FilterState` keeps them.
    headers: std::cell::RefCell<Vec<(String, String)>>,
}

pub struct LadderRoot {
    /// `None`: an unknown rung name, refused at configuration.
    rung: Option<Rung>,
    state: Option<Rc<Ladder>>,
}

impl LadderRoot {
    pub fn new(rung: Option<Rung>) -> LadderRoot {
        LadderRoot { rung, state: None }
    }
}

impl Context for LadderRoot {}

impl RootContext for LadderRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        if self.rung.is_none() {
            let _ = hostcalls::log(
                proxy_wasm::types::LogLevel::Error,
                "JWT_EDGE_BENCH names an unknown ladder rung",
            );
            return false;
        }
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Ok(policy) = config::parse(&String::from_utf8_lossy(&raw)) else {
            return false;
        };
        self.state = Some(Rc::new(Ladder {
            headers: Default::default(),
            cache: TokenCache::new(policy.providers.iter().map(|p| p.jwt_cache_size)),
            allowed_metrics: policy
                .providers
                .iter()
                .map(|p| metrics::provider_allowed(&p.name))
                .collect(),
            policy,
        }));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(LadderStream {
            rung: self.rung.unwrap_or(Rung::Floor),
            state: self.state.clone(),
        }))
    }
}

struct LadderStream {
    rung: Rung,
    state: Option<Rc<Ladder>>,
}

impl Context for LadderStream {}

impl HttpContext for LadderStream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let host = ProxyHost;
        let rung = self.rung;
        match rung {
            Rung::Floor => return Action::Continue,
            Rung::Remove => {
                host.remove_request_header("authorization");
                return Action::Continue;
            }
            Rung::Set => {
                host.set_request_header("x-jwt-sub", "user-0");
                return Action::Continue;
            }
            Rung::Add => {
                host.add_request_header("x-jwt-sub", "user-0");
                return Action::Continue;
            }
            Rung::Get => {
                black_box(hostcalls::get_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    "authorization",
                ))
                .ok();
                return Action::Continue;
            }
            _ => {}
        }
        let Some(state) = &self.state else {
            return Action::Continue;
        };
        let now = host.now_ms();
        if rung == Rung::Clock {
            black_box(now);
            return Action::Continue;
        }
        let mut headers = state.headers.take();
        host.read_request_headers(&mut headers);
        let action = Self::after_headers(rung, state, &host, &mut headers, now);
        state.headers.replace(headers);
        action
    }
}

impl LadderStream {
    /// The rungs from `headers` on, over the request headers read.
    fn after_headers(
        rung: Rung,
        state: &Ladder,
        host: &ProxyHost,
        headers: &mut Vec<(String, String)>,
        now: UnixMillis,
    ) -> Action {
        let policy = &state.policy;
        // As `FilterState::handle`: client copies of identity headers go (none here).
        headers.retain(|(name, _)| {
            let forged = policy.identity_headers.iter().any(|h| h == name);
            if forged {
                host.remove_request_header(name);
            }
            !forged
        });
        if rung == Rung::Headers {
            black_box(&headers);
            return Action::Continue;
        }
        let req = RequestView::new(headers, None);
        if rung == Rung::Extract || rung == Rung::Cache {
            black_box(requirement_for(policy, &req));
            let Some(p) = policy.providers.first() else {
                return Action::Continue;
            };
            let Ok(Some(found)) = extract(&req, p) else {
                return Action::Continue;
            };
            if rung == Rung::Cache && state.cache.get(0, &found.token).is_none() {
                let keys = LocalKeys(policy);
                if let (KeyState::Ready(keys), Ok(token)) = (
                    keys.keys(p.jwks),
                    UntrustedToken::parse(&found.token, p.max_token_bytes),
                ) {
                    if let Ok(verified) = token.verify(keys, &p.algorithms) {
                        state.cache.put(0, &found.token, &verified);
                    }
                }
            }
            black_box(found);
            return Action::Continue;
        }
        let decision = decide_cached(policy, &req, &LocalKeys(policy), &state.cache, now);
        let Decision::Allow(allow) = decision else {
            // Every bench token is valid: anything else is a broken set-up, made visible.
            host.send_response(500, &[], b"ladder: token refused");
            return Action::Pause;
        };
        if rung == Rung::Decide {
            black_box(allow);
            return Action::Continue;
        }
        for name in &allow.remove_headers {
            host.remove_request_header(name);
        }
        // The bench's requests carry no identity header: jwt-edge adds it (`HeaderOp::Add`).
        for (name, value) in &allow.set_headers {
            host.add_request_header(name, value);
        }
        if rung == Rung::Write {
            return Action::Continue;
        }
        // As `FilterState::handle` on an accepted request.
        let (hits, misses) = state.cache.take_stats();
        if hits > 0 {
            host.increment_counter(metrics::CACHE_HIT, hits as i64);
        }
        if misses > 0 {
            host.increment_counter(metrics::CACHE_MISS, misses as i64);
        }
        host.increment_counter(metrics::ALLOWED, 1);
        for id in &allow.identities {
            if let Some(name) = state.allowed_metrics.get(id.provider_id) {
                host.increment_counter(name, 1);
            }
        }
        Action::Continue
    }
}
