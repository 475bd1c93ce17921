//! Deciding one stream: a decision that needs keys not there yet makes the stream wait, or,
//! when no fetch is coming for them, is taken again at once with those sources counted as
//! waited for.

use crate::authn::authenticate::Decision;
use crate::authn::outcome::{Authenticator, Plan, Request};
use crate::authn::policy::JwksId;
use crate::sources::dpop_nonce::check_nonces;
use crate::sources::dpop_replay::record_proofs;
use crate::sources::{Command, SharedData, Sources, Waiting};
use crate::time::UnixMillis;

/// Decisions of one stream in a row before it is decided with what is there: each extra
/// round adds a source the stream waited for, so this is never reached in practice.
const MAX_ROUNDS: usize = 8;

/// Where a stream's decision stands: a new request, or one that waited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retry {
    /// Sources the stream already waited for.
    pub waited: Vec<JwksId>,
    /// Missing keys are unavailable: decide with what is there.
    pub last_chance: bool,
    /// The deadline of the first wait (`None`: a new request).
    pub deadline_ms: Option<UnixMillis>,
}

impl Sources {
    /// Decides stream `stream` until it is allowed, refused or waits. Returns the plan to
    /// carry out on the stream, then the commands to carry out (a wait's).
    pub fn decide<'a>(
        &mut self,
        auth: &'a Authenticator,
        store: &dyn SharedData,
        now: UnixMillis,
        stream: u32,
        req: Request<'a>,
        retry: Retry,
    ) -> (Plan<'a>, Vec<Command>) {
        let Retry {
            mut waited,
            deadline_ms,
            ..
        } = retry;
        let last_chance = retry.last_chance || !auth.profile().can_wait;
        let (mut hits, mut misses) = (0, 0);
        let mut round = 1;
        loop {
            let keys = self.lookup(
                auth.policy(),
                now,
                &waited,
                last_chance || round >= MAX_ROUNDS,
            );
            let mut plan = auth.plan(req, &keys, now);
            plan.cache_hits += hits;
            plan.cache_misses += misses;
            let ids = match plan.decision() {
                Decision::Allow(allow) if !allow.proofs.is_empty() => {
                    // DPoP proofs are checked for their server nonce, then for replay, only
                    // once the request is allowed: a proof refused for its nonce is not
                    // recorded (the client's retry comes with a new proof anyway).
                    let proofs = allow.proofs.clone();
                    let policy = auth.policy();
                    let checked = check_nonces(store, policy, &proofs, now).and_then(|()| {
                        record_proofs(store, policy, &proofs, now).map_err(|(p, e)| (p, e, None))
                    });
                    return match checked {
                        Ok(()) => (plan, Vec::new()),
                        Err((provider, error, nonce)) => {
                            self.refused(stream);
                            (plan.refuse(provider, error, nonce), Vec::new())
                        }
                    };
                }
                Decision::Allow(_) => return (plan, Vec::new()),
                Decision::Deny(_) => {
                    self.refused(stream);
                    return (plan, Vec::new());
                }
                // Not reached: the last round is a last chance, which never waits; if it
                // did, it is refused below as unavailable.
                Decision::WaitForKeys(_) if round >= MAX_ROUNDS => {
                    self.refused(stream);
                    return (plan.unavailable(), Vec::new());
                }
                Decision::WaitForKeys(ids) => ids.clone(),
            };
            match self.wait(now, store, stream, ids, deadline_ms) {
                Waiting::Paused(commands) => return (plan, commands),
                Waiting::DecideNow(more) => waited.extend(more),
            }
            (hits, misses) = (plan.cache_hits, plan.cache_misses);
            round += 1;
        }
    }
}
