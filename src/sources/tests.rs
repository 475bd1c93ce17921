//! The key-source engine without a host: events in, commands out, shared data in memory.

use serde_json::{json, Value};

use super::*;
use crate::authn::config;

const T0: u64 = 1_800_000_000_000;
const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");

/// Shared data as proxy-wasm-cpp-host keeps it (one CAS counter; a write without a token
/// always succeeds); it records every write that was not conditional on a present record.
type Mem = crate::sources::memory::MemoryStore;

fn config_text(issuer_discovery: bool) -> String {
    let uri = if issuer_discovery {
        "https://issuer.test/.well-known/openid-configuration"
    } else {
        "https://idp.test/keys"
    };
    json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "remote_jwks": {"http_uri": {"uri": uri, "cluster": "idp", "timeout": "2s"},
                            "cache_duration": "60s", "discovery": issuer_discovery}
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    })
    .to_string()
}

/// One VM: its policy and its engine.
struct Vm {
    policy: Policy,
    engine: Sources,
}

fn vm_with(text: &str, id: u64) -> Vm {
    let policy = config::parse(text).unwrap();
    let engine = Sources::new(&policy, text.as_bytes(), id);
    Vm { policy, engine }
}

fn vm(id: u64) -> Vm {
    vm_with(&config_text(false), id)
}

fn without_rsa1() -> String {
    let v: Value = serde_json::from_str(JWKS).unwrap();
    json!({"keys": v["keys"].as_array().unwrap()[1..]}).to_string()
}

/// The kids this VM would verify with at `now`, or `None` when it has no usable keys.
fn kids(vm: &Vm, now: u64) -> Option<Vec<String>> {
    match vm
        .engine
        .lookup(&vm.policy, UnixMillis(now), &[], false)
        .keys(0)
    {
        KeyState::Ready(set) => Some(set.iter().filter_map(|k| k.kid.clone()).collect()),
        _ => None,
    }
}

/// The call tokens dispatched by `commands` (a fresh token per call, reported back).
fn dispatch_all(
    vm: &mut Vm,
    now: u64,
    store: &Mem,
    commands: &[Command],
    next: &mut u32,
) -> Vec<u32> {
    let mut tokens = Vec::new();
    for c in commands {
        if let Command::Dispatch { from, call } = c {
            assert_eq!(*from, Context::Root);
            *next += 1;
            let more = vm
                .engine
                .dispatched(UnixMillis(now), store, call, Ok(*next));
            assert!(more.iter().all(|c| !matches!(c, Command::Dispatch { .. })));
            tokens.push(*next);
        }
    }
    tokens
}

fn answer(
    vm: &mut Vm,
    now: u64,
    store: &Mem,
    token: u32,
    status: &str,
    body: &str,
) -> Vec<Command> {
    let limit = vm.engine.answer_limit(token).unwrap();
    let body = (status == "200" && body.len() <= limit).then(|| body.as_bytes().to_vec());
    let size = body.as_ref().map_or(0, Vec::len);
    vm.engine
        .answer(UnixMillis(now), store, token, status, size, body)
}

fn decided(commands: &[Command]) -> Vec<(u32, bool)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Decide {
                stream,
                last_chance,
                ..
            } => Some((*stream, *last_chance)),
            _ => None,
        })
        .collect()
}

fn logs(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Log(_, text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// VM `a` fetches `body` as the first version; `others` install it on their tick.
fn first_load(a: &mut Vm, others: &mut [&mut Vm], store: &Mem, body: &str, next: &mut u32) {
    let c = a.engine.tick(UnixMillis(T0), store);
    let tokens = dispatch_all(a, T0, store, &c, next);
    assert_eq!(tokens.len(), 1);
    answer(a, T0 + 10, store, tokens[0], "200", body);
    for o in others.iter_mut() {
        let c = o.engine.tick(UnixMillis(T0 + 20), store);
        assert!(!c.iter().any(|c| matches!(c, Command::Dispatch { .. })));
    }
}

/// Rotation (issue 15): a token whose kid is unknown waits when another VM's refetch is
/// under way, or when a newer version is already in shared data, although this VM's own
/// copy of the record (a tick old) says neither; and is refused at once only when nothing
/// is coming and the refetch rate limit is spent.
#[test]
fn an_unknown_kid_waits_for_a_refetch_another_vm_runs() {
    let store = Mem::default();
    let (mut a, mut b) = (vm(1), vm(2));
    let mut next = 0;
    first_load(&mut a, &mut [&mut b], &store, &without_rsa1(), &mut next);
    let now = T0 + 20_000;
    // A's request asks for the early refetch; A's tick starts it.
    assert!(matches!(
        a.engine.wait(UnixMillis(now), &store, 1, vec![0], None),
        Waiting::Paused(_)
    ));
    let c = a.engine.tick(UnixMillis(now + 50), &store);
    let tokens = dispatch_all(&mut a, now + 50, &store, &c, &mut next);
    assert_eq!(tokens.len(), 1);
    // B has not ticked since: its copy says no fetch is under way, and the rate limit is
    // spent. Its request waits all the same.
    assert!(matches!(
        b.engine
            .wait(UnixMillis(now + 60), &store, 7, vec![0], None),
        Waiting::Paused(_)
    ));
    // The new key set lands (A); B still has not ticked, a third request on B waits too.
    answer(&mut a, now + 80, &store, tokens[0], "200", JWKS);
    assert_eq!(decided(&a.engine.tick(UnixMillis(now + 90), &store)), []);
    assert!(matches!(
        b.engine
            .wait(UnixMillis(now + 85), &store, 8, vec![0], None),
        Waiting::Paused(_)
    ));
    // B's tick installs it and decides both waiting streams, with the new key.
    let c = b.engine.tick(UnixMillis(now + 100), &store);
    assert_eq!(decided(&c), [(7, false), (8, false)]);
    assert!(c.contains(&Command::ClearTokenCache));
    assert!(kids(&b, now + 100).unwrap().contains(&"rsa-1".to_owned()));
    // Nothing under way, nothing newer, the interval not over: decided at once.
    assert_eq!(
        b.engine
            .wait(UnixMillis(now + 200), &store, 9, vec![0], None),
        Waiting::DecideNow(vec![0])
    );
    assert_eq!(b.engine.pending_len(), 0);
}

/// Cold start (issue 15): while requests wait for a source that never loaded, a failed
/// fetch is retried every 250 ms (one fetch at a time for the proxy), not after the
/// backoff; a waiting request is decided again after each fetch.
#[test]
fn a_cold_source_with_waiters_is_retried_every_250_ms() {
    let store = Mem::default();
    let (mut a, mut b) = (vm(1), vm(2));
    let mut next = 0;
    // Fail a few times first, so that the backoff is long (1 + 2 + 4 s ...).
    let mut now = T0;
    for _ in 0..4 {
        now += 30_000;
        let c = a.engine.tick(UnixMillis(now), &store);
        let t = dispatch_all(&mut a, now, &store, &c, &mut next);
        assert_eq!(t.len(), 1);
        answer(&mut a, now + 5, &store, t[0], "503", "down");
    }
    now += 5;
    // Without waiters, nothing for seconds.
    for step in 1..=20 {
        let c = a.engine.tick(UnixMillis(now + step * 100), &store);
        assert!(c.iter().all(|c| !matches!(c, Command::Dispatch { .. })));
    }
    now += 2_000;
    // A request waits on B (not the VM that fetched). B retries 250 ms after the last failure.
    assert!(matches!(
        b.engine.wait(UnixMillis(now), &store, 1, vec![0], None),
        Waiting::Paused(_)
    ));
    let c = b.engine.tick(UnixMillis(now + 100), &store);
    let t = dispatch_all(&mut b, now + 100, &store, &c, &mut next);
    assert_eq!(t.len(), 1, "the last failure was over 250 ms ago");
    let c = answer(&mut b, now + 150, &store, t[0], "503", "down");
    assert_eq!(decided(&c), [(1, false)], "woken by the failed fetch");
    assert!(matches!(
        b.engine.wait(
            UnixMillis(now + 150),
            &store,
            1,
            vec![0],
            Some(UnixMillis(now + 3_000))
        ),
        Waiting::Paused(_)
    ));
    let mut fetches = Vec::new();
    for step in 1..=10 {
        let at = now + 150 + step * 100;
        for vm in [&mut a, &mut b] {
            let c = vm.engine.tick(UnixMillis(at), &store);
            let t = dispatch_all(vm, at, &store, &c, &mut next);
            for token in t {
                fetches.push(at);
                let c = answer(vm, at + 5, &store, token, "503", "down");
                // The adapter decides the woken stream: still no keys, it waits again.
                for (stream, _) in decided(&c) {
                    let w = vm.engine.wait(
                        UnixMillis(at + 5),
                        &store,
                        stream,
                        vec![0],
                        Some(UnixMillis(now + 3_000)),
                    );
                    assert!(matches!(w, Waiting::Paused(_)));
                }
            }
        }
    }
    // One fetch at a time, every 250-300 ms (ticks are 100 ms apart).
    let gaps: Vec<u64> = fetches.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [300, 300], "{fetches:?}");
    let c = b.engine.tick(UnixMillis(now + 3_000), &store);
    assert_eq!(decided(&c), [(1, true)], "the deadline is kept");
}

/// F2: a document byte-identical to the stored one keeps its version: no VM installs it
/// again or empties its token cache.
#[test]
fn an_identical_document_changes_nothing() {
    let store = Mem::default();
    let (mut a, mut b) = (vm(1), vm(2));
    let mut next = 0;
    first_load(&mut a, &mut [&mut b], &store, JWKS, &mut next);
    let refresh = T0 + 58_000;
    let c = a.engine.tick(UnixMillis(refresh), &store);
    let t = dispatch_all(&mut a, refresh, &store, &c, &mut next);
    assert_eq!(t.len(), 1, "refresh due");
    let c = answer(&mut a, refresh + 5, &store, t[0], "200", JWKS);
    assert!(!c.contains(&Command::ClearTokenCache));
    assert_eq!(logs(&c), ["jwks p: unchanged (version 1)"]);
    assert!(c.contains(&Command::Counter("jwt_edge.jwks.p.fetch_success".into(), 1)));
    let c = b.engine.tick(UnixMillis(refresh + 100), &store);
    assert!(c.is_empty(), "{c:?}");
    // The refetch counts as fresh: usable past the first fetch's cache_duration + max_stale.
    let later = refresh + 60_000 + 24 * 3_600_000 - 1;
    assert!(kids(&b, later).is_some());
    // A different document is the next version, and empties the caches.
    let c = a.engine.tick(UnixMillis(refresh + 58_000), &store);
    let t = dispatch_all(&mut a, refresh + 58_000, &store, &c, &mut next);
    let c = answer(
        &mut a,
        refresh + 58_005,
        &store,
        t[0],
        "200",
        &without_rsa1(),
    );
    assert!(c.contains(&Command::ClearTokenCache));
    let c = b.engine.tick(UnixMillis(refresh + 58_100), &store);
    assert!(c.contains(&Command::ClearTokenCache));
    assert!(!kids(&b, refresh + 58_100)
        .unwrap()
        .contains(&"rsa-1".to_owned()));
}

/// F3: every write of a present record is conditional; an answer that comes after the
/// lease passed to another VM cannot bring back a removed key.
#[test]
fn a_late_answer_cannot_bring_back_a_removed_key() {
    let store = Mem::default();
    let (mut a, mut b) = (vm(1), vm(2));
    let mut next = 0;
    first_load(&mut a, &mut [&mut b], &store, JWKS, &mut next);
    let refresh = T0 + 58_000;
    // A starts the refresh, then stalls (no ticks, no answer).
    let c = a.engine.tick(UnixMillis(refresh), &store);
    let slow = dispatch_all(&mut a, refresh, &store, &c, &mut next);
    assert_eq!(slow.len(), 1);
    // B takes the lapsed lease and fetches the rotated set: rsa-1 removed.
    let c = b.engine.tick(UnixMillis(refresh + 500), &store);
    assert!(
        dispatch_all(&mut b, refresh + 500, &store, &c, &mut next).is_empty(),
        "lease held"
    );
    let c = b.engine.tick(UnixMillis(refresh + 1_100), &store);
    let t = dispatch_all(&mut b, refresh + 1_100, &store, &c, &mut next);
    assert_eq!(t.len(), 1, "taken over");
    answer(
        &mut b,
        refresh + 1_200,
        &store,
        t[0],
        "200",
        &without_rsa1(),
    );
    // A's answer, with rsa-1, comes late: dropped.
    let c = answer(&mut a, refresh + 1_300, &store, slow[0], "200", JWKS);
    assert_eq!(
        logs(&c),
        ["jwks p: answer came after the fetch lease passed on; dropped"]
    );
    let mut fresh = vm(3);
    fresh.engine.tick(UnixMillis(refresh + 1_400), &store);
    assert!(!kids(&fresh, refresh + 1_400)
        .unwrap()
        .contains(&"rsa-1".to_owned()));
    a.engine.tick(UnixMillis(refresh + 1_400), &store);
    assert!(!kids(&a, refresh + 1_400)
        .unwrap()
        .contains(&"rsa-1".to_owned()));
    assert_eq!(*store.blind_overwrites.borrow(), Vec::<String>::new());
}

/// F7: a record not written under this configuration is not used (another plugin in the
/// same `vm_id`, or another configuration), and a discovery-based key set records the
/// issuer its discovery document was checked against.
#[test]
fn records_are_bound_to_the_configuration() {
    let store = Mem::default();
    let mut a = vm(1);
    let mut next = 0;
    first_load(&mut a, &mut [], &store, JWKS, &mut next);
    // Another configuration has its own records: it fetches for itself.
    let other_text = config_text(false).replace("60s", "61s");
    let mut other = vm_with(&other_text, 2);
    let c = other.engine.tick(UnixMillis(T0 + 100), &store);
    assert_eq!(
        dispatch_all(&mut other, T0 + 100, &store, &c, &mut next).len(),
        1
    );
    // Another plugin copies our records under the other configuration's names: refused.
    let key = |vm: &Vm| vm.engine.meta_key(0).unwrap().to_owned();
    let (ours, theirs) = (key(&a), key(&other));
    let copy = |from: &str, to: &str| {
        let v = store.read(from).0.unwrap();
        store.put(to, &v, 999);
    };
    copy(&ours, &theirs);
    copy(
        &ours.replace("/meta", "/doc"),
        &theirs.replace("/meta", "/doc"),
    );
    let c = other.engine.tick(UnixMillis(T0 + 200), &store);
    assert_eq!(
        logs(&c),
        ["jwks p: shared record not written under this configuration; ignored"]
    );
    assert!(kids(&other, T0 + 200).is_none());

    // Discovery: a document stored with another issuer is refused even under a valid tag.
    let text = config_text(true);
    let mut d = vm_with(&text, 4);
    let meta_key = key(&d);
    let doc_key = meta_key.replace("/meta", "/doc");
    let doc = DocRecord {
        version: 1,
        issuer: "https://evil.test",
        body: JWKS.as_bytes(),
    };
    let lease = Lease::default().on_success(UnixMillis(T0), Millis(60_000), 0.0, doc.digest());
    let binding = Binding::new(text.as_bytes());
    store
        .compare_and_swap(&doc_key, &doc.encode(), None)
        .unwrap();
    store
        .compare_and_swap(&meta_key, &binding.seal(&meta_key, &lease.encode()), None)
        .unwrap();
    let c = d.engine.tick(UnixMillis(T0 + 100), &store);
    assert_eq!(
        logs(&c),
        ["jwks p: shared copy unusable: checked against another issuer"]
    );
    assert!(kids(&d, T0 + 100).is_none());
}

#[test]
fn warn_lines_per_source_are_a_burst_then_one_per_interval() {
    let mut b = WarnBudget::default();
    // Every tick (100 ms) for a minute: a burst, then one line per interval, each carrying
    // the count of lines it stands for.
    let mut written = Vec::new();
    for tick in 0..600u64 {
        if let Some(suppressed) = b.admit(UnixMillis(T0 + tick * 100)) {
            written.push((tick * 100, suppressed));
        }
    }
    assert_eq!(written.len() as u32, WARN_BURST + 5, "{written:?}");
    assert!(written[..WARN_BURST as usize]
        .iter()
        .all(|&(at, n)| at < 500 && n == 0));
    let later: Vec<u64> = written[WARN_BURST as usize..]
        .iter()
        .map(|&(at, _)| at)
        .collect();
    assert_eq!(later, [10_000, 20_000, 30_000, 40_000, 50_000]);
    assert_eq!(written[WARN_BURST as usize].1, 100 - WARN_BURST);
    assert_eq!(written[WARN_BURST as usize + 1].1, 99);
    // Quiet for long enough: the whole burst is back.
    let quiet = T0 + 60_000 + WARN_BURST as u64 * WARN_REFILL_MS.as_millis();
    assert!((0..WARN_BURST).all(|i| b.admit(UnixMillis(quiet + i as u64)).is_some()));
    assert_eq!(b.admit(UnixMillis(quiet + 10)), None);
}

/// Lifecycle records exist before the first tick (no VM ever creates one while starting a
/// fetch, which cannot be conditional), and seeding never replaces a record that is there.
#[test]
fn seeding_creates_missing_lease_records_and_keeps_existing_ones() {
    let store = Mem::default();
    let (mut a, b) = (vm(1), vm(2));
    let key = a.engine.meta_key(0).unwrap().to_owned();
    assert!(store.read(&key).0.is_none());
    a.engine.seed(&store);
    let (seeded, cas) = store.read(&key);
    assert!(seeded.is_some() && cas.is_some());
    // The first tick starts a fetch by compare-and-swap on the seeded record.
    let commands = a.engine.tick(UnixMillis(1_000), &store);
    assert_eq!(
        commands
            .iter()
            .filter(|c| matches!(c, Command::Dispatch { .. }))
            .count(),
        1
    );
    let (taken, taken_cas) = store.read(&key);
    assert_ne!(taken, seeded);
    // Another VM configured now leaves the fetch in progress as it is, and does not fetch.
    b.engine.seed(&store);
    assert_eq!(store.read(&key), (taken, taken_cas));
    let mut b = b;
    let commands = b.engine.tick(UnixMillis(1_000), &store);
    assert!(commands
        .iter()
        .all(|c| !matches!(c, Command::Dispatch { .. })));
}
