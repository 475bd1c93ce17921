//! The decision: which requirement applies to a request, and whether the request meets it.
//!
//! [`decide`] is the core's one entry point for a request. It needs the compiled policy, the
//! request, a view of the key sets, and `now`; it returns a [`Decision`] that the adapter
//! carries out. It never blocks: when a key set is still being fetched it says so
//! ([`Decision::WaitForKeys`]) and the adapter asks again later. [`decide_recorded`] is the
//! same decision reporting its steps to a [`Recorder`] (`jwt-edge explain` prints them).

use std::borrow::Cow;
use std::rc::Rc;

use crate::authn::b64;
use crate::authn::claims;
use crate::authn::error::{AuthError, Scheme};
use crate::authn::extract::{extract, present_at, Found, FoundAt};
use crate::authn::jwk::KeySet;
use crate::authn::jws::{payload_segment, UntrustedToken, VerifiedToken};
use crate::authn::policy::{
    ClaimRequirement, DpopMode, JwksId, MtlsMode, Policy, Provider, ProviderId, Requirement,
    Revocation, RouteOverride,
};
use crate::authn::request::RequestView;
use crate::authn::sender::dpop::{check_bearer_use, check_proof, ProofRequest};
use crate::authn::sender::mtls::check_certificate_binding;
use crate::authn::sender::nonce::NonceClaim;
use crate::authn::sender::replay::ReplayKey;
use crate::authn::token_cache::TokenCache;
use crate::authn::trace::{Check, Met, Outcome, Recorder, Selection, Step};
use crate::time::UnixMillis;

/// Longest realm echoed in `WWW-Authenticate` (jwt_authn's limit).
pub const MAX_REALM_LEN: usize = 256;

/// What the key cache can say about a key source right now.
#[derive(Debug, Clone, Copy)]
pub enum KeyState<'a> {
    /// Usable keys (fresh, or stale within the allowed age).
    Ready(&'a KeySet),
    /// No keys yet; a fetch is under way or due.
    Pending,
    /// No keys, and none are coming soon (fetches failed).
    Unavailable,
}

/// What the adapter can say about a remote revocation list right now.
#[derive(Debug, Clone, Copy)]
pub enum ListState<'a> {
    /// A usable list (fresh, or stale within the allowed age).
    Ready(&'a Revocation),
    /// No usable list yet; a fetch is under way or due.
    Pending,
    /// No usable list, and none is coming soon: fail closed.
    Unavailable,
}

/// The adapter's view of every key source (and remote revocation list).
pub trait KeyLookup {
    /// The state of key source `id`.
    fn keys(&self, id: JwksId) -> KeyState<'_>;

    /// True when a token whose `kid` is not in source `id` should wait for an early refetch
    /// of that source (the key may have just been published) rather than be refused now.
    fn may_refetch(&self, _id: JwksId) -> bool {
        false
    }

    /// The state of remote revocation list `id`. Without one, tokens of a provider that
    /// names a list are refused (fail closed).
    fn revocation_list(&self, _id: JwksId) -> ListState<'_> {
        ListState::Unavailable
    }
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Let it through, after these header changes.
    Allow(Allow),
    /// Answer it locally.
    Deny(Denial),
    /// Ask again when one of these key sources has keys (or has failed).
    WaitForKeys(Vec<JwksId>),
}

/// Changes to make to an accepted request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Allow {
    /// Headers to set (replacing any value).
    pub set_headers: Vec<(String, String)>,
    /// Headers to remove (tokens not forwarded).
    pub remove_headers: Vec<String>,
    /// A new `:path` without token query parameters, when one was removed.
    pub new_path: Option<String>,
    /// The providers whose tokens verified, with log-safe facts about them.
    pub identities: Vec<Identity>,
    /// Why the request was allowed (for logs and metrics).
    pub reason: AllowReason,
    /// [`AllowReason::ReportOnly`]: the refusal the request was spared.
    pub would_deny: Option<Box<Denial>>,
    /// Extension: the DPoP proofs this request was allowed on; the caller records them in
    /// the replay cache and refuses the request if one was seen before
    /// ([`crate::authn::sender::replay::record_proofs`]).
    pub proofs: Vec<Proof>,
    /// The vouching providers' `payload_in_metadata` / `header_in_metadata` entries (name,
    /// JSON), in provider order; empty when none is configured.
    pub published: Vec<(String, String)>,
}

/// A DPoP proof that passed: its replay-cache key, the last second it would pass again
/// (seconds since the epoch, the scale of its `iat`) and its nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof {
    pub provider: ProviderId,
    pub key: ReplayKey,
    pub until: u64,
    /// Its `nonce` claim, checked with the replay cache when the provider requires nonces.
    pub nonce: NonceClaim,
}

/// Why a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllowReason {
    /// A token satisfied the requirement.
    #[default]
    Verified,
    /// No requirement applies to this request.
    NoRequirement,
    /// CORS preflight bypass.
    CorsPreflight,
    /// `allow_missing` / `allow_missing_or_failed` let it through without a valid token.
    Allowed,
    /// Extension: a `report_only` rule would have refused it ([`Allow::would_deny`]); no
    /// identity header is set, and tokens that are not forwarded are still taken out.
    ReportOnly,
}

/// Log-safe facts about a verified token: never the token itself. `iss`, `sub` and `kid`
/// are read from the verified token (shared with the cache) when they are logged or printed,
/// not copied on every accepted request.
#[derive(Debug, Clone)]
pub struct Identity {
    pub provider_id: ProviderId,
    pub provider: String,
    token: Rc<VerifiedToken>,
}

impl Identity {
    pub fn new(provider_id: ProviderId, provider: String, token: Rc<VerifiedToken>) -> Identity {
        Identity {
            provider_id,
            provider,
            token,
        }
    }

    /// The `iss` claim, if it is a string.
    #[inline]
    pub fn iss(&self) -> Option<&str> {
        self.token.claims().get("iss").and_then(|v| v.as_str())
    }

    /// The `sub` claim, if it is a string.
    #[inline]
    pub fn sub(&self) -> Option<&str> {
        self.token.claims().get("sub").and_then(|v| v.as_str())
    }

    /// The header's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.token.header().kid.as_deref()
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Identity) -> bool {
        self.provider_id == other.provider_id
            && self.provider == other.provider
            && self.iss() == other.iss()
            && self.sub() == other.sub()
            && self.kid() == other.kid()
    }
}

impl Eq for Identity {}

/// A local reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub error: AuthError,
    /// The provider whose check produced `error`, if one did.
    pub provider: Option<String>,
    /// Log-safe facts from the token's (unverified) header and claims, if it parsed.
    pub kid: Option<String>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Decides a request without a verified-token cache. `route_name` in `req` selects
/// `per_route` entries.
pub fn decide(
    policy: &Policy,
    req: &RequestView<'_>,
    keys: &dyn KeyLookup,
    now: UnixMillis,
) -> Decision {
    decide_cached(policy, req, keys, &TokenCache::disabled(), now)
}

/// Decides a request, reusing and filling `cache`.
pub fn decide_cached(
    policy: &Policy,
    req: &RequestView<'_>,
    keys: &dyn KeyLookup,
    cache: &TokenCache,
    now: UnixMillis,
) -> Decision {
    decide_recorded(policy, req, keys, cache, now, &mut ())
}

/// [`decide_cached`], reporting each step it takes to `rec`.
pub fn decide_recorded<R: Recorder>(
    policy: &Policy,
    req: &RequestView<'_>,
    keys: &dyn KeyLookup,
    cache: &TokenCache,
    now: UnixMillis,
    rec: &mut R,
) -> Decision {
    let decision = decide_steps(policy, req, keys, cache, now, rec);
    rec.step(Step::Verdict(&decision));
    decision
}

fn decide_steps<R: Recorder>(
    policy: &Policy,
    req: &RequestView<'_>,
    keys: &dyn KeyLookup,
    cache: &TokenCache,
    now: UnixMillis,
    rec: &mut R,
) -> Decision {
    if policy.bypass_cors_preflight && req.is_cors_preflight() {
        rec.step(Step::CorsPreflight);
        return Decision::Allow(Allow {
            reason: AllowReason::CorsPreflight,
            ..Allow::default()
        });
    }
    let selection = select_requirement(policy, req);
    rec.step(Step::Selected(selection));
    let Some(requirement) = selection.requirement() else {
        return Decision::Allow(Allow {
            reason: AllowReason::NoRequirement,
            ..Allow::default()
        });
    };
    let mut eval = Evaluation {
        policy,
        req,
        keys,
        cache,
        now,
        results: ById::default(),
        proofs: ById::default(),
        rec,
    };
    let scope = Scope::of(requirement, policy.providers.len());
    match eval
        .check(requirement, None)
        .and_then(|passed| eval.check_present_tokens(&scope).map(|()| passed))
    {
        Ok(passed) => Decision::Allow(eval.allow(&passed, &scope)),
        Err(Fail::Pending(ids)) => Decision::WaitForKeys(ids),
        Err(Fail::Auth(provider, error)) if report_only(policy, selection) => {
            // No token vouches: `allow` with nothing passed sets no identity header and
            // takes out every token it looked at that is not forwarded.
            Decision::Allow(Allow {
                reason: AllowReason::ReportOnly,
                would_deny: Some(Box::new(eval.deny(provider, error))),
                ..eval.allow(&Passed::default(), &scope)
            })
        }
        Err(Fail::Auth(provider, error)) => Decision::Deny(eval.deny(provider, error)),
    }
}

/// True when the selected requirement comes from a `report_only` rule.
pub fn report_only(policy: &Policy, selection: Selection<'_>) -> bool {
    match selection {
        Selection::Rule { index, .. } => policy.rules.get(index).is_some_and(|r| r.report_only),
        Selection::PerRoute { .. } | Selection::NoRule => false,
    }
}

/// The providers a requirement looks at: every token they find must be valid, and with
/// `forward: false` none of them reaches the upstream.
/// Vectors without repeats, in the order the tree names them: a handful of ids (a `BTreeSet`
/// here cost 7.6 KB of Wasm).
#[derive(Debug, Default)]
struct Scope {
    /// Every provider the requirement names, plus those its `allow_missing*` branches see.
    looked: Vec<ProviderId>,
    /// Providers seen by an `allow_missing_or_failed` branch: their invalid tokens are let
    /// through (that is the point of it), but never forwarded when `forward` is false.
    tolerated: Vec<ProviderId>,
}

impl Scope {
    #[inline]
    fn of(r: &Requirement, provider_count: usize) -> Scope {
        let mut scope = Scope::default();
        scope.walk(r, None, provider_count);
        scope
    }

    fn walk(&mut self, r: &Requirement, siblings: Option<&[ProviderId]>, n: usize) {
        match r {
            Requirement::Provider { provider, .. } => add(&mut self.looked, [*provider]),
            Requirement::Any(children) => {
                let ids = sibling_providers(children);
                for c in children {
                    self.walk(c, Some(&ids), n);
                }
            }
            Requirement::All(children) => {
                for c in children {
                    self.walk(c, None, n);
                }
            }
            Requirement::AllowMissing | Requirement::AllowMissingOrFailed => {
                let ids = allow_missing_scope(siblings, n);
                add(&mut self.looked, ids.iter().copied());
                if matches!(r, Requirement::AllowMissingOrFailed) {
                    add(&mut self.tolerated, ids);
                }
            }
        }
    }
}

fn add(set: &mut Vec<ProviderId>, ids: impl IntoIterator<Item = ProviderId>) {
    for id in ids {
        if !set.contains(&id) {
            set.push(id);
        }
    }
}

/// The providers named directly by the children of a `requires_any`.
fn sibling_providers(children: &[Requirement]) -> Vec<ProviderId> {
    children
        .iter()
        .filter_map(|c| match c {
            Requirement::Provider { provider, .. } => Some(*provider),
            _ => None,
        })
        .collect()
}

/// Which providers an `allow_missing` / `allow_missing_or_failed` considers. Inside a
/// `requires_any`, only its siblings' providers (as jwt_authn since Envoy PR #15194: "allow
/// missing should only allow requests without any JWT" of those providers); anywhere else,
/// every provider.
fn allow_missing_scope(siblings: Option<&[ProviderId]>, n: usize) -> Vec<ProviderId> {
    match siblings {
        Some(ids) => ids.to_vec(),
        None => (0..n).collect(),
    }
}

/// The requirement for a request: `per_route` by route name first, then the first rule.
pub fn requirement_for<'p>(policy: &'p Policy, req: &RequestView<'_>) -> Option<&'p Requirement> {
    select_requirement(policy, req).requirement()
}

/// Which requirement applies to a request, and where it comes from.
pub fn select_requirement<'p>(policy: &'p Policy, req: &RequestView<'_>) -> Selection<'p> {
    if let Some((route, over)) = req
        .route_name()
        .and_then(|r| policy.per_route.get_key_value(r))
    {
        let requirement = match over {
            RouteOverride::Disabled => None,
            RouteOverride::Require(r) => Some(r),
        };
        return Selection::PerRoute { route, requirement };
    }
    match policy
        .rules
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.matcher.matches(req))
    {
        Some((index, rule)) => Selection::Rule {
            index,
            requirement: rule.requires.as_ref(),
        },
        None => Selection::NoRule,
    }
}

impl<'a> Selection<'a> {
    /// The requirement selected, if any.
    pub fn requirement(self) -> Option<&'a Requirement> {
        match self {
            Selection::PerRoute { requirement, .. } | Selection::Rule { requirement, .. } => {
                requirement
            }
            Selection::NoRule => None,
        }
    }
}

/// A requirement that passed, through these providers' tokens: the only ones whose identity
/// is forwarded (none when an allow-missing branch let the request through without one).
#[derive(Debug, Default)]
struct Passed {
    providers: Vec<ProviderId>,
}

/// Why a requirement did not pass (yet).
enum Fail {
    Pending(Vec<JwksId>),
    Auth(Option<ProviderId>, AuthError),
}

/// One provider's outcome on this request, computed at most once.
enum ProviderResult<'a> {
    Missing,
    Verified {
        token: Rc<VerifiedToken>,
        found: Found<'a>,
    },
    /// The error, log-safe facts, and the token when one was found (a location that held
    /// something unusable, e.g. two tokens, has none).
    Failed(AuthError, Facts, Option<Cow<'a, str>>),
    Pending(JwksId),
}

#[derive(Default, Clone)]
struct Facts {
    kid: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
}

struct Evaluation<'a, 'r, R> {
    policy: &'a Policy,
    req: &'a RequestView<'r>,
    keys: &'a dyn KeyLookup,
    cache: &'a TokenCache,
    now: UnixMillis,
    results: ById<ProviderResult<'a>>,
    /// Extension: the DPoP proofs that passed, by provider, for the replay cache.
    proofs: ById<Proof>,
    rec: &'a mut R,
}

/// A decision's values by provider: a request names one or a few providers, so a list
/// searched in order serves better than a map (a B-tree's first node is eleven slots of
/// results). The first value is kept inline: a request under one provider, the usual case,
/// allocates nothing here (issue #13: the list's first insert was one of a cache hit's 12
/// allocations, 544 bytes).
struct ById<T> {
    first: Option<(ProviderId, T)>,
    rest: Vec<(ProviderId, T)>,
}

impl<T> Default for ById<T> {
    fn default() -> Self {
        ById {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<T> ById<T> {
    #[inline]
    fn get(&self, id: &ProviderId) -> Option<&T> {
        self.entries().find(|(k, _)| k == id).map(|(_, v)| v)
    }

    fn contains_key(&self, id: &ProviderId) -> bool {
        self.get(id).is_some()
    }

    /// Sets `id`'s value, replacing one it had.
    fn insert(&mut self, id: ProviderId, value: T) {
        let empty = self.first.is_none();
        let slot = self
            .first
            .iter_mut()
            .chain(self.rest.iter_mut())
            .find(|(k, _)| *k == id);
        match slot {
            Some(slot) => slot.1 = value,
            None if empty => self.first = Some((id, value)),
            None => self.rest.push((id, value)),
        }
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.entries().map(|(_, v)| v)
    }

    /// Every entry, in insertion order.
    fn entries(&self) -> impl Iterator<Item = &(ProviderId, T)> {
        self.first.iter().chain(self.rest.iter())
    }
}

/// Reports check `check` of provider `id` and hands its result back.
#[inline(always)]
fn checked<R: Recorder>(
    rec: &mut R,
    provider: ProviderId,
    check: Check<'_>,
    result: Result<(), AuthError>,
) -> Result<(), AuthError> {
    rec.step(Step::Check {
        provider,
        check,
        outcome: result.as_ref().map(|_| ()),
    });
    result
}

impl<'a, R: Recorder> Evaluation<'a, '_, R> {
    /// Whether the request meets `r`, and through which providers' tokens. `siblings` are
    /// the providers named next to `r` when `r` is a child of a `requires_any`.
    fn check(&mut self, r: &Requirement, siblings: Option<&[ProviderId]>) -> Result<Passed, Fail> {
        let result = self.check_node(r, siblings);
        let met = match &result {
            Ok(passed) => Met::Yes(&passed.providers),
            Err(Fail::Pending(ids)) => Met::Pending(ids),
            Err(Fail::Auth(provider, error)) => Met::No {
                provider: *provider,
                error,
            },
        };
        self.rec.step(Step::Requirement {
            requirement: r,
            met,
        });
        result
    }

    fn check_node(
        &mut self,
        r: &Requirement,
        siblings: Option<&[ProviderId]>,
    ) -> Result<Passed, Fail> {
        match r {
            Requirement::Provider {
                provider,
                audiences,
                scopes,
                claims,
            } => self
                .check_provider(*provider, audiences.as_deref(), scopes, claims)
                .map(|()| Passed {
                    providers: vec![*provider],
                }),
            Requirement::Any(children) => {
                let mut pending = Vec::new();
                let mut best: Option<(Option<ProviderId>, AuthError)> = None;
                let ids = sibling_providers(children);
                for child in children {
                    match self.check(child, Some(&ids)) {
                        // Only the branch that passed vouches for the request.
                        Ok(passed) => return Ok(passed),
                        Err(Fail::Pending(ids)) => pending.extend(ids),
                        Err(Fail::Auth(p, e)) => {
                            if best.as_ref().is_none_or(|(_, b)| rank(&e) > rank(b)) {
                                best = Some((p, e));
                            }
                        }
                    }
                }
                if !pending.is_empty() {
                    return Err(Fail::Pending(dedup(pending)));
                }
                let (p, e) = best.unwrap_or((None, AuthError::TokenMissing));
                Err(Fail::Auth(p, e))
            }
            Requirement::All(children) => {
                let mut pending = Vec::new();
                let mut all = Passed::default();
                for child in children {
                    match self.check(child, None) {
                        Ok(passed) => all.providers.extend(passed.providers),
                        Err(Fail::Pending(ids)) => pending.extend(ids),
                        Err(fail @ Fail::Auth(..)) => return Err(fail),
                    }
                }
                if pending.is_empty() {
                    Ok(all)
                } else {
                    Err(Fail::Pending(dedup(pending)))
                }
            }
            Requirement::AllowMissing | Requirement::AllowMissingOrFailed => {
                let or_failed = matches!(r, Requirement::AllowMissingOrFailed);
                let mut pending = Vec::new();
                let mut failure = None;
                let mut passed = Passed::default();
                let ids = allow_missing_scope(siblings, self.policy.providers.len());
                self.rec.step(Step::AllowMissing {
                    or_failed,
                    providers: &ids,
                });
                for id in ids {
                    let audiences = self
                        .policy
                        .providers
                        .get(id)
                        .map(|p| p.audiences.as_slice())
                        .unwrap_or(&[]);
                    self.provider_result(id);
                    // A token counts only if it is valid for the provider as configured,
                    // its audiences included (jwt_authn does the same).
                    let outcome = match self.results.get(&id).unwrap_or(&ProviderResult::Missing) {
                        ProviderResult::Missing => continue,
                        ProviderResult::Verified { token, .. } => checked(
                            self.rec,
                            id,
                            Check::Audience {
                                audiences,
                                own: true,
                            },
                            claims::check_audience(token.claims(), audiences),
                        ),
                        ProviderResult::Pending(j) => {
                            pending.push(*j);
                            continue;
                        }
                        ProviderResult::Failed(e, ..) => Err(e.clone()),
                    };
                    match outcome {
                        Ok(()) => passed.providers.push(id),
                        Err(e) => {
                            if failure.as_ref().is_none_or(|(_, b)| rank(&e) > rank(b)) {
                                failure = Some((Some(id), e));
                            }
                        }
                    }
                }
                if !passed.providers.is_empty() || or_failed && pending.is_empty() {
                    return Ok(passed);
                }
                if !pending.is_empty() {
                    return Err(Fail::Pending(dedup(pending)));
                }
                match failure {
                    // No provider found a token.
                    None => Ok(passed),
                    Some((p, e)) => Err(Fail::Auth(p, e)),
                }
            }
        }
    }

    fn check_provider(
        &mut self,
        id: ProviderId,
        audiences: Option<&[String]>,
        scopes: &[String],
        required_claims: &[ClaimRequirement],
    ) -> Result<(), Fail> {
        let provider_audiences = self
            .policy
            .providers
            .get(id)
            .map(|p| p.audiences.as_slice())
            .unwrap_or(&[]);
        let own = audiences.is_none();
        let audiences = audiences.unwrap_or(provider_audiences);
        self.provider_result(id);
        let rec = &mut *self.rec;
        match self.results.get(&id).unwrap_or(&ProviderResult::Missing) {
            ProviderResult::Missing => Err(Fail::Auth(Some(id), AuthError::TokenMissing)),
            ProviderResult::Pending(j) => Err(Fail::Pending(vec![*j])),
            ProviderResult::Failed(e, ..) => Err(Fail::Auth(Some(id), e.clone())),
            ProviderResult::Verified { token, .. } => {
                let c = token.claims();
                checked(
                    rec,
                    id,
                    Check::Audience { audiences, own },
                    claims::check_audience(c, audiences),
                )
                .and_then(|()| {
                    checked(
                        rec,
                        id,
                        Check::Scopes(scopes),
                        claims::check_scopes(c, scopes),
                    )
                })
                .and_then(|()| {
                    checked(
                        rec,
                        id,
                        Check::Claims(required_claims),
                        claims::check_required_claims(c, required_claims),
                    )
                })
                .map_err(|e| Fail::Auth(Some(id), e))
            }
        }
    }

    /// Computes provider `id`'s result unless it already has one (`self.results` then holds it).
    fn provider_result(&mut self, id: ProviderId) {
        if !self.results.contains_key(&id) {
            let r = self.compute(id);
            let outcome = match &r {
                ProviderResult::Missing => Outcome::Missing,
                ProviderResult::Verified { .. } => Outcome::Verified,
                ProviderResult::Failed(e, ..) => Outcome::Failed(e),
                ProviderResult::Pending(j) => Outcome::Pending(*j),
            };
            self.rec.step(Step::Result {
                provider: id,
                outcome,
            });
            self.results.insert(id, r);
        }
    }

    fn compute(&mut self, id: ProviderId) -> ProviderResult<'a> {
        let policy = self.policy;
        let lookup = self.keys;
        let Some(p) = policy.providers.get(id) else {
            return ProviderResult::Missing;
        };
        let found = extract(self.req, p);
        self.rec.step(Step::Token {
            provider: id,
            found: found.as_ref().map(Option::as_ref),
        });
        let found = match found {
            Ok(Some(f)) => f,
            Ok(None) => return ProviderResult::Missing,
            Err(e) => return ProviderResult::Failed(e, Facts::default(), None),
        };
        // A cached token is only as good as the keys that verified it: when they are no longer
        // usable (too stale, or still loading), the cache is not consulted.
        let keys_ready = matches!(lookup.keys(p.jwks), KeyState::Ready(_));
        if let Some(hit) = keys_ready
            .then(|| self.cache.get(id, &found.token))
            .flatten()
        {
            self.rec.step(Step::CacheHit { provider: id });
            // Same bytes, verified before under the current keys, and cached only after the
            // issuer and subject checks of this provider (whose configuration lives as long
            // as the cache) passed: what depends on `now` is checked again.
            let claims = hit.claims();
            // Only a refusal logs them: a hit that passes allocates none of them.
            let facts = || Facts {
                kid: hit.header().kid.clone(),
                iss: string_claim(claims, "iss"),
                sub: string_claim(claims, "sub"),
            };
            let rec = &mut *self.rec;
            if let Err(e) = checked(rec, id, Check::Times, hit.check_times(p, self.now)) {
                return ProviderResult::Failed(e, facts(), Some(found.token));
            }
            if let Some(refused) = self.check_revoked(id, claims, p, &facts, &found.token) {
                return refused;
            }
            if let Err(e) = self.check_sender(id, p, &found, claims) {
                return ProviderResult::Failed(e, facts(), Some(found.token));
            }
            return ProviderResult::Verified { token: hit, found };
        }
        let token = match UntrustedToken::parse(&found.token, p.max_token_bytes) {
            Ok(t) => t,
            Err(e) => {
                self.rec.step(Step::Check {
                    provider: id,
                    check: Check::Parse,
                    outcome: Err(&e),
                });
                return ProviderResult::Failed(e, Facts::default(), Some(found.token));
            }
        };
        self.rec.step(Step::Parsed {
            provider: id,
            token: &token,
        });
        let facts = Facts {
            kid: token.header().kid.clone(),
            iss: string_claim(token.unverified_claims(), "iss"),
            sub: string_claim(token.unverified_claims(), "sub"),
        };
        let fail = |e| ProviderResult::Failed(e, facts.clone(), Some(found.token.clone()));
        let rec = &mut *self.rec;
        // Cheap checks first: a token refused here costs no signature verification.
        let alg = match token.allowed_alg(&p.algorithms) {
            Ok(alg) => alg,
            Err(e) => {
                rec.step(Step::Check {
                    provider: id,
                    check: Check::Alg,
                    outcome: Err(&e),
                });
                return fail(e);
            }
        };
        rec.step(Step::Check {
            provider: id,
            check: Check::Alg,
            outcome: Ok(()),
        });
        let unverified = token.unverified_claims();
        if let Err(e) = checked(rec, id, Check::Issuer, claims::check_issuer(unverified, p)) {
            return fail(e);
        }
        if let Err(e) = checked(
            rec,
            id,
            Check::Times,
            claims::check_times(unverified, p, self.now),
        ) {
            return fail(e);
        }
        let state = lookup.keys(p.jwks);
        rec.step(Step::Keys {
            provider: id,
            jwks: p.jwks,
            state,
        });
        let keys = match state {
            KeyState::Ready(keys) => keys,
            KeyState::Pending => return ProviderResult::Pending(p.jwks),
            KeyState::Unavailable => return fail(AuthError::JwksUnavailable),
        };
        if let Some(kid) = &token.header().kid {
            if matches!(keys.select(Some(kid), alg), Err(AuthError::UnknownKid(_)))
                && lookup.may_refetch(p.jwks)
            {
                rec.step(Step::Refetch {
                    provider: id,
                    jwks: p.jwks,
                });
                return ProviderResult::Pending(p.jwks);
            }
        }
        let verified = token.verify_seen(keys, &p.algorithms, |candidates, verified_by| {
            rec.step(Step::KeysTried {
                provider: id,
                candidates,
                verified_by,
            })
        });
        let verified = match verified {
            Ok(v) => {
                rec.step(Step::Check {
                    provider: id,
                    check: Check::Signature,
                    outcome: Ok(()),
                });
                v
            }
            Err(e) => {
                let check = match e {
                    AuthError::BadSignature => Check::Signature,
                    _ => Check::KeySelection,
                };
                rec.step(Step::Check {
                    provider: id,
                    check,
                    outcome: Err(&e),
                });
                return fail(e);
            }
        };
        if let Err(e) = checked(
            rec,
            id,
            Check::Subject,
            claims::check_subject(verified.claims(), p),
        ) {
            return fail(e);
        }
        // Cached before the deny-lists are consulted: they are consulted on every hit too,
        // and a request waiting for a revocation list needs no second verification.
        self.cache.put(id, &found.token, &verified);
        let verified = Rc::new(verified);
        if let Some(refused) =
            self.check_revoked(id, verified.claims(), p, &|| facts.clone(), &found.token)
        {
            return refused;
        }
        // Never cached: a proof is for one request.
        if let Err(e) = self.check_sender(id, p, &found, verified.claims()) {
            return fail(e);
        }
        ProviderResult::Verified {
            token: verified,
            found,
        }
    }

    /// Extension: the sender constraints of a verified (and not revoked) token, each on its
    /// own: the certificate binding first (cheap, no side effect), then DPoP. Checked on
    /// cache hits too: both bind the token to this request's connection or proof.
    ///
    /// mTLS (RFC 8705 §3): under `required` the token's `cnf.x5t#S256` must be the SHA-256
    /// of the connection's client certificate; under `optional` only a token that carries
    /// one must match. DPoP: a token under the `DPoP` scheme needs a valid proof (its replay
    /// key is kept for the caller's replay check, [`Allow::proofs`]); under `Bearer`, a
    /// provider that requires DPoP refuses it, and one that takes DPoP refuses a token bound
    /// by `cnf.jkt`.
    fn check_sender(
        &mut self,
        id: ProviderId,
        p: &Provider,
        found: &Found<'_>,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), AuthError> {
        let cnf = claims.get("cnf");
        if p.sender.mtls != MtlsMode::Disabled {
            let bound = check_certificate_binding(cnf, self.req.client_certificate());
            let result = match (p.sender.mtls, bound) {
                (MtlsMode::Optional, Err(AuthError::MtlsTokenUnbound)) => Ok(()),
                (_, result) => result,
            };
            checked(self.rec, id, Check::CertificateBinding, result)?;
        }
        self.check_dpop(id, p, found, cnf)
    }

    fn check_dpop(
        &mut self,
        id: ProviderId,
        p: &Provider,
        found: &Found<'_>,
        cnf: Option<&serde_json::Value>,
    ) -> Result<(), AuthError> {
        let result = match (p.sender.dpop, found.dpop) {
            (DpopMode::Disabled, _) => return Ok(()),
            (DpopMode::Required, false) => Err(match check_bearer_use(cnf) {
                Err(e) => e,
                Ok(()) => AuthError::DpopTokenUnbound,
            }),
            (DpopMode::Optional, false) => check_bearer_use(cnf),
            (_, true) => {
                let req = self.req;
                let authority = req
                    .header_values(":authority")
                    .chain(req.header_values("host"))
                    .next()
                    .unwrap_or("");
                let scheme = req.header_values(":scheme").next().unwrap_or("");
                let proofs: Vec<&str> = req.header_values("dpop").collect();
                let request = ProofRequest {
                    method: req.method(),
                    scheme,
                    authority,
                    path: req.path(),
                };
                check_proof(
                    &proofs,
                    &request,
                    &found.token,
                    cnf,
                    &p.sender.proof,
                    self.now,
                )
                .map(|facts| {
                    self.proofs.insert(
                        id,
                        Proof {
                            provider: id,
                            key: facts.replay_key,
                            until: facts.replay_until,
                            nonce: facts.nonce,
                        },
                    );
                })
            }
        };
        checked(self.rec, id, Check::SenderConstraint, result)
    }

    /// The deny-lists' verdict on a verified token: the inline list, then the remote one
    /// (waited for when still loading; fail closed when unavailable). `None` lets it pass.
    fn check_revoked(
        &mut self,
        id: ProviderId,
        claims: &serde_json::Map<String, serde_json::Value>,
        p: &Provider,
        facts: &dyn Fn() -> Facts,
        token: &Cow<'a, str>,
    ) -> Option<ProviderResult<'a>> {
        let failed = |e| ProviderResult::Failed(e, facts(), Some(token.clone()));
        let revoked = |revokes: bool| match revokes {
            true => Err(AuthError::TokenRevoked),
            false => Ok(()),
        };
        let inline = revoked(p.revoked.revokes(claims));
        if let Err(e) = checked(self.rec, id, Check::InlineRevocation, inline) {
            return Some(failed(e));
        }
        let list = p.revocation_list?;
        let lookup = self.keys;
        let state = lookup.revocation_list(list);
        self.rec.step(Step::RevocationList {
            provider: id,
            list,
            state,
        });
        let remote = match state {
            ListState::Ready(r) => revoked(r.revokes(claims)),
            ListState::Pending => return Some(ProviderResult::Pending(list)),
            ListState::Unavailable => Err(AuthError::RevocationUnavailable),
        };
        checked(self.rec, id, Check::RemoteRevocation, remote)
            .err()
            .map(failed)
    }

    /// A token that is present must be valid: once the requirement passed, every provider
    /// it looks at that found a token must have verified it (jwt_authn refuses a request with
    /// a good and a bad token, so that the bad one never reaches a backend that might take it
    /// for the good one). Exceptions: providers under `allow_missing_or_failed`, and a token
    /// another provider verified (a shared location: the same token is another provider's
    /// `issuer_mismatch`).
    fn check_present_tokens(&mut self, scope: &Scope) -> Result<(), Fail> {
        let mut pending = Vec::new();
        let mut failure: Option<(ProviderId, AuthError)> = None;
        let checked: Vec<ProviderId> = scope
            .looked
            .iter()
            .filter(|id| !scope.tolerated.contains(id))
            .copied()
            .collect();
        for &id in &checked {
            self.provider_result(id);
        }
        for id in checked {
            match self.results.get(&id).unwrap_or(&ProviderResult::Missing) {
                ProviderResult::Pending(j) => pending.push(*j),
                ProviderResult::Failed(e, _, token) => {
                    let vouched = token.as_deref().is_some_and(|t| self.verified_elsewhere(t));
                    self.rec.step(Step::PresentToken {
                        provider: id,
                        error: e,
                        vouched,
                    });
                    if !vouched && failure.as_ref().is_none_or(|(_, b)| rank(e) > rank(b)) {
                        failure = Some((id, e.clone()));
                    }
                }
                ProviderResult::Missing | ProviderResult::Verified { .. } => {}
            }
        }
        if !pending.is_empty() {
            return Err(Fail::Pending(dedup(pending)));
        }
        match failure {
            Some((id, e)) => Err(Fail::Auth(Some(id), e)),
            None => Ok(()),
        }
    }

    /// True when some provider verified exactly this token.
    fn verified_elsewhere(&self, token: &str) -> bool {
        self.results
            .values()
            .any(|r| matches!(r, ProviderResult::Verified { found, .. } if found.token == token))
    }

    fn allow(&self, passed: &Passed, scope: &Scope) -> Allow {
        let mut allow = Allow {
            reason: if passed.providers.is_empty() {
                AllowReason::Allowed
            } else {
                AllowReason::Verified
            },
            ..Allow::default()
        };
        let mut removed_params: Vec<&str> = Vec::new();
        // In provider order, each once (one provider needs no copy to sort).
        let vouching: Cow<'_, [ProviderId]> = if passed.providers.len() < 2 {
            Cow::Borrowed(&passed.providers)
        } else {
            let mut sorted = passed.providers.clone();
            sorted.sort_unstable();
            sorted.dedup();
            Cow::Owned(sorted)
        };
        for id in vouching.iter() {
            let (Some(ProviderResult::Verified { token, found }), Some(p)) =
                (self.results.get(id), self.policy.providers.get(*id))
            else {
                continue;
            };
            let claims = token.claims();
            allow.proofs.extend(self.proofs.get(id).copied());
            allow
                .identities
                .push(Identity::new(*id, p.name.clone(), token.clone()));
            if !p.publish.is_empty() {
                allow
                    .published
                    .extend(p.publish.entries(&found.token, claims));
            }
            if let Some(name) = &p.forward_payload_header {
                let value = if p.pad_forward_payload_header {
                    b64::decode(payload_segment(&found.token))
                        .map(|bytes| b64::encode_padded(&bytes))
                        .unwrap_or_default()
                } else {
                    payload_segment(&found.token).to_owned()
                };
                set_header(&mut allow.set_headers, name, value);
            }
            for c in &p.claim_to_headers {
                if let Some(v) = claims::claim_at(claims, &c.claim_path)
                    .and_then(|v| claims::claim_header_value(v, c.format))
                {
                    set_header(&mut allow.set_headers, &c.header_name, v);
                }
            }
            if !p.forward {
                for at in &found.at {
                    match at {
                        FoundAt::Header(h) => {
                            if !allow.remove_headers.iter().any(|r| r == h) {
                                allow.remove_headers.push((*h).to_owned());
                            }
                        }
                        FoundAt::Param(name) => removed_params.push(name),
                        // jwt_authn's `forward` covers headers only; a cookie header carries
                        // other cookies and is left as it is.
                        FoundAt::Cookie(_) => {}
                    }
                }
            }
        }
        // Tokens the filter looked at that vouched for nothing (another branch passed, or
        // `allow_missing_or_failed` let an invalid one through) are not forwarded either.
        let mut unused: Vec<FoundAt> = Vec::new();
        for id in scope.looked.iter().filter(|id| !vouching.contains(id)) {
            let Some(p) = self.policy.providers.get(*id).filter(|p| !p.forward) else {
                continue;
            };
            match self.results.get(id) {
                Some(ProviderResult::Verified { found, .. }) => unused.extend(found.at.clone()),
                Some(ProviderResult::Failed(..)) => unused.extend(present_at(self.req, p)),
                _ => {}
            }
        }
        for at in &unused {
            match at {
                FoundAt::Header(h) => {
                    if !allow.remove_headers.iter().any(|r| r == h) {
                        allow.remove_headers.push((*h).to_owned());
                    }
                }
                // A repeat is harmless to `remove_query_params`; no sort for `&str` in the
                // module just to drop it.
                FoundAt::Param(name) => removed_params.push(name),
                FoundAt::Cookie(_) => {}
            }
        }
        if !removed_params.is_empty() {
            allow.new_path = Some(remove_query_params(self.req.path(), &removed_params));
        }
        allow
    }

    fn deny(&self, provider: Option<ProviderId>, error: AuthError) -> Denial {
        let facts = provider
            .and_then(|id| match self.results.get(&id) {
                Some(ProviderResult::Failed(_, facts, _)) => Some(facts.clone()),
                Some(ProviderResult::Verified { token, .. }) => Some(Facts {
                    kid: token.header().kid.clone(),
                    iss: string_claim(token.claims(), "iss"),
                    sub: string_claim(token.claims(), "sub"),
                }),
                _ => None,
            })
            .unwrap_or_default();
        let p = provider.and_then(|id| self.policy.providers.get(id));
        let mut denial = provider_denial(self.policy, self.req, p, error);
        denial.provider = p.map(|p| p.name.clone());
        denial.kid = facts.kid;
        denial.iss = facts.iss;
        denial.sub = facts.sub;
        denial
    }
}

/// The local reply for `error` on `req` (no provider or token facts): status, headers and
/// body as the policy wants them.
pub fn denial(policy: &Policy, req: &RequestView<'_>, error: AuthError) -> Denial {
    provider_denial(policy, req, None, error)
}

/// [`denial`] for a failure of provider `p`: a provider that takes DPoP tokens challenges
/// under the `DPoP` scheme with its proof algorithms (RFC 9449 §7.1).
pub fn provider_denial(
    policy: &Policy,
    req: &RequestView<'_>,
    p: Option<&Provider>,
    error: AuthError,
) -> Denial {
    let scheme = match p {
        Some(p) if p.sender.dpop != DpopMode::Disabled => Scheme::Dpop {
            algs: &p.sender.proof.algs,
        },
        _ => Scheme::Bearer,
    };
    let status = error.status().http_code();
    let (headers, body) = if policy.strip_failure_response {
        (Vec::new(), String::new())
    } else {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(v) = error.challenge(&realm(req), scheme) {
            headers.push(("www-authenticate".to_owned(), v));
        }
        let body = crate::authn::json::to_compact(&serde_json::json!({
            "error": error.code(),
            "error_description": error.to_string(),
        }));
        (headers, body)
    };
    Denial {
        error,
        provider: None,
        kid: None,
        iss: None,
        sub: None,
        status,
        headers,
        body,
    }
}

/// How informative an error is when several requirements failed: a real token problem beats
/// "not this provider's issuer", which beats "no token".
fn rank(e: &AuthError) -> u8 {
    match e {
        AuthError::TokenMissing => 0,
        AuthError::IssuerMismatch => 1,
        _ => 2,
    }
}

fn dedup(mut ids: Vec<JwksId>) -> Vec<JwksId> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn string_claim(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(|v| v.as_str()).map(str::to_owned)
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    match headers.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => headers.push((name.to_owned(), value)),
    }
}

/// The realm for `WWW-Authenticate`: the request URL without its query (which may hold a
/// token), at most [`MAX_REALM_LEN`] bytes.
pub fn realm(req: &RequestView<'_>) -> String {
    let scheme = req.header_values(":scheme").next().unwrap_or("http");
    // The client's `Host` where the host hands it over beside `:authority`: ngx_wasm_module
    // builds `:authority` from the server's own name and port. (Envoy has no `host` header:
    // HTTP/1's Host becomes `:authority`.)
    let authority = req
        .header_values("host")
        .next()
        .or_else(|| req.header_values(":authority").next())
        .unwrap_or("");
    let mut realm = format!("{scheme}://{authority}{}", req.path_without_query());
    if realm.len() > MAX_REALM_LEN {
        let mut cut = MAX_REALM_LEN;
        while !realm.is_char_boundary(cut) {
            cut -= 1;
        }
        realm.truncate(cut);
    }
    realm
}

/// `path` with every query parameter named in `names` removed.
fn remove_query_params(path: &str, names: &[&str]) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let key = crate::authn::request::percent_decode(key).unwrap_or_default();
            !names.contains(&key.as_str())
        })
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inline first entry and the list behind it behave as one list: insertion order,
    /// replacement in place, lookups of every entry.
    #[test]
    fn by_id_keeps_order_and_replaces_in_place() {
        let mut m: ById<&str> = ById::default();
        assert_eq!(m.get(&0), None);
        assert_eq!(m.values().count(), 0);
        m.insert(3, "a");
        m.insert(1, "b");
        m.insert(7, "c");
        m.insert(1, "B");
        m.insert(3, "A");
        assert_eq!(m.values().copied().collect::<Vec<_>>(), ["A", "B", "c"]);
        assert_eq!(
            (m.get(&3), m.get(&1), m.get(&7), m.get(&2)),
            (Some(&"A"), Some(&"B"), Some(&"c"), None)
        );
        assert!(m.contains_key(&7) && !m.contains_key(&0));
        assert!(m.rest.len() == 2 && m.first == Some((3, "A")));
    }

    #[test]
    fn query_removal() {
        assert_eq!(
            remove_query_params("/a?access_token=x&b=1", &["access_token"]),
            "/a?b=1"
        );
        assert_eq!(
            remove_query_params("/a?access_token=x", &["access_token"]),
            "/a"
        );
        assert_eq!(
            remove_query_params("/a?b=1&access%5Ftoken=x", &["access_token"]),
            "/a?b=1"
        );
        assert_eq!(remove_query_params("/a", &["access_token"]), "/a");
    }

    #[test]
    fn realm_takes_the_clients_host_over_a_servers_authority() {
        let hs: Vec<(String, String)> = vec![
            (":scheme".into(), "http".into()),
            (":authority".into(), "lab.local:18080".into()),
            ("host".into(), "api.example.com".into()),
            (":path".into(), "/orders?access_token=x".into()),
        ];
        assert_eq!(
            realm(&RequestView::new(&hs, None)),
            "http://api.example.com/orders"
        );
    }

    #[test]
    fn realm_never_carries_the_query() {
        let hs: Vec<(String, String)> = vec![
            (":scheme".into(), "https".into()),
            (":authority".into(), "api.example.com".into()),
            (":path".into(), "/v1/x?access_token=secret".into()),
        ];
        assert_eq!(
            realm(&RequestView::new(&hs, None)),
            "https://api.example.com/v1/x"
        );
        let long: Vec<(String, String)> = vec![(":path".into(), format!("/{}", "é".repeat(300)))];
        let r = realm(&RequestView::new(&long, None));
        assert!(r.len() <= MAX_REALM_LEN);
    }
}
