//! The steps a decision takes, for whoever wants to watch: `jwt-edge explain` prints them.
//!
//! [`decide_recorded`](crate::authn::authenticate::decide_recorded) reports each step to a
//! [`Recorder`] as it takes it. The filter's recorder is `()`: its `step` is empty and
//! [`Recorder::ENABLED`] is false, so once the decision is monomorphised for it every call and
//! every step built for it compiles away. One pipeline, two outputs: explain shows the checks
//! the filter makes, in its order, and nothing after the first failure (the filter stops there).
//!
//! Steps borrow from the decision; a step that holds a token ([`Step::Token`]) holds it so the
//! recorder can measure or fingerprint it, never to print it.

use crate::authn::authenticate::{Decision, KeyState, ListState};
use crate::authn::error::AuthError;
use crate::authn::extract::Found;
use crate::authn::jwk::Jwk;
use crate::authn::jws::UntrustedToken;
use crate::authn::policy::{ClaimRequirement, JwksId, ProviderId, Requirement};

/// Receives a decision's steps.
pub trait Recorder {
    /// False when `step` does nothing: steps that cost work of their own to describe are then
    /// not built at all.
    const ENABLED: bool = true;

    fn step(&mut self, step: Step<'_>);
}

/// The filter's recorder: records nothing, costs nothing.
impl Recorder for () {
    const ENABLED: bool = false;

    #[inline(always)]
    fn step(&mut self, _step: Step<'_>) {}
}

/// Which requirement applies to the request, and why.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// `per_route` entry `route` (`None`: disabled, no token required).
    PerRoute {
        route: &'a str,
        requirement: Option<&'a Requirement>,
    },
    /// The first rule that matched, by index (`None`: the rule requires nothing).
    Rule {
        index: usize,
        requirement: Option<&'a Requirement>,
    },
    /// No rule matched: no token required.
    NoRule,
}

/// One check of a provider's token.
#[derive(Debug, Clone, Copy)]
pub enum Check<'a> {
    /// Parsing the compact JWS (the token's size first).
    Parse,
    /// The header's `alg` against the provider's allow-list.
    Alg,
    Issuer,
    /// `exp`, `nbf`, `iat` and `max_lifetime` against `now`.
    Times,
    /// Key selection by `kid` and `alg` (its candidates are in [`Step::KeysTried`]).
    KeySelection,
    Signature,
    Subject,
    /// The provider's inline deny-list.
    InlineRevocation,
    /// The provider's remote revocation list.
    RemoteRevocation,
    /// Extension: the sender constraint (the `DPoP` scheme and proof, or `Bearer` use).
    SenderConstraint,
    /// Extension: the token's certificate binding (`cnf.x5t#S256`, RFC 8705 §3).
    CertificateBinding,
    /// Audiences a requirement asks for. `own` when they are the provider's.
    Audience {
        audiences: &'a [String],
        own: bool,
    },
    Scopes(&'a [String]),
    /// Required claim values; a failure names the claim in its error.
    Claims(&'a [ClaimRequirement]),
}

/// A provider's outcome on the request, computed once however many requirements name it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Missing,
    Verified,
    Failed(&'a AuthError),
    /// Waiting for this key source (or revocation list).
    Pending(JwksId),
}

/// How a requirement node came out.
#[derive(Debug, Clone, Copy)]
pub enum Met<'a> {
    /// Met, through these providers' tokens (none: an allow-missing branch).
    Yes(&'a [ProviderId]),
    No {
        provider: Option<ProviderId>,
        error: &'a AuthError,
    },
    Pending(&'a [JwksId]),
}

/// One step of a decision. No `Debug`: some steps hold the token.
#[derive(Clone, Copy)]
pub enum Step<'a> {
    /// A CORS preflight, let through without looking for tokens.
    CorsPreflight,
    /// The requirement that applies.
    Selected(Selection<'a>),
    /// An `allow_missing` / `allow_missing_or_failed` node looks at these providers' tokens:
    /// inside a `requires_any` its siblings' providers, anywhere else every provider.
    AllowMissing {
        or_failed: bool,
        providers: &'a [ProviderId],
    },
    /// Where the provider's token is: `Ok(None)` none, `Err` its locations hold something
    /// unusable (two tokens, a bad prefix).
    Token {
        provider: ProviderId,
        found: Result<Option<&'a Found<'a>>, &'a AuthError>,
    },
    /// The verified-token cache holds this token: parsing and signature are skipped, the
    /// claims that depend on `now` are checked again.
    CacheHit { provider: ProviderId },
    /// The token parsed: its header and unverified claims.
    Parsed {
        provider: ProviderId,
        token: &'a UntrustedToken<'a>,
    },
    /// The provider's key source as the decision found it.
    Keys {
        provider: ProviderId,
        jwks: JwksId,
        state: KeyState<'a>,
    },
    /// An unknown `kid` waits for an early refetch of the key source.
    Refetch { provider: ProviderId, jwks: JwksId },
    /// The keys the token's `kid` and `alg` selected, and the one that verified it if any.
    KeysTried {
        provider: ProviderId,
        candidates: &'a [&'a Jwk],
        verified_by: Option<usize>,
    },
    /// The provider's remote revocation list as the decision found it.
    RevocationList {
        provider: ProviderId,
        list: JwksId,
        state: ListState<'a>,
    },
    /// A check and its outcome.
    Check {
        provider: ProviderId,
        check: Check<'a>,
        outcome: Result<(), &'a AuthError>,
    },
    /// The provider's outcome.
    Result {
        provider: ProviderId,
        outcome: Outcome<'a>,
    },
    /// A requirement node evaluated.
    Requirement {
        requirement: &'a Requirement,
        met: Met<'a>,
    },
    /// Once the requirement passed: a token the requirement looked at that did not verify
    /// refuses the request, unless another provider verified the same token (`vouched`).
    PresentToken {
        provider: ProviderId,
        error: &'a AuthError,
        vouched: bool,
    },
    /// The decision.
    Verdict(&'a Decision),
}
