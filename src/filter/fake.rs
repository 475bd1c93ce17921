//! A fake host that records outcomes (replies, header changes, resumes, callouts, counters)
//! instead of scripting host calls, so adapter tests survive refactors. Several fake VMs can
//! share one [`SharedStore`], as Envoy's VMs share one proxy's shared data.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::filter::host::{Host, SharedWriteError};

/// Shared data with CAS, as proxy-wasm-cpp-host implements it (one global counter).
#[derive(Debug, Default)]
pub struct SharedStore {
    values: BTreeMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

/// A local reply the adapter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A call the adapter dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub path: String,
    pub authority: String,
}

/// One stream as the fake host sees it.
#[derive(Debug, Clone, Default)]
pub struct StreamRecord {
    pub headers: Vec<(String, String)>,
    pub reply: Option<Reply>,
    pub resumed: bool,
}

/// The fake host of one VM.
#[derive(Debug)]
pub struct FakeHost {
    pub now_ms: Cell<u64>,
    pub shared: Rc<RefCell<SharedStore>>,
    pub streams: RefCell<BTreeMap<u32, StreamRecord>>,
    pub current: Cell<u32>,
    pub route_name: RefCell<Option<String>>,
    pub calls: RefCell<Vec<Call>>,
    next_token: Cell<u32>,
    /// The response the next `call_response_*` reads: status and body.
    pub call_response: RefCell<(String, Vec<u8>)>,
    pub counters: RefCell<BTreeMap<String, i64>>,
    pub gauges: RefCell<BTreeMap<String, u64>>,
    pub tick_ms: Cell<u64>,
    /// Clusters that exist; dispatching to another fails as Envoy's does.
    pub clusters: Vec<String>,
    /// Set while a stream callback runs: a call dispatched then would be answered to the
    /// stream, not to the root context, so the fake refuses it and counts it.
    pub in_stream_callback: Cell<bool>,
    pub dispatches_from_streams: Cell<u32>,
    /// ngx_wasm_module's profile: `set_effective_context` answers Ok and does nothing.
    pub context_switch_is_noop: Cell<bool>,
    /// `set_effective_context` calls (on the ngx profile each one is a stream touched from
    /// the root context: a crashed worker there).
    pub context_switches: Cell<u32>,
}

impl FakeHost {
    /// A VM on `shared`, at time `now_ms`, with these clusters.
    pub fn new(shared: Rc<RefCell<SharedStore>>, now_ms: u64, clusters: &[&str]) -> FakeHost {
        FakeHost {
            now_ms: Cell::new(now_ms),
            shared,
            streams: RefCell::new(BTreeMap::new()),
            current: Cell::new(0),
            route_name: RefCell::new(None),
            calls: RefCell::new(Vec::new()),
            next_token: Cell::new(1),
            call_response: RefCell::new((String::new(), Vec::new())),
            counters: RefCell::new(BTreeMap::new()),
            gauges: RefCell::new(BTreeMap::new()),
            tick_ms: Cell::new(0),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            in_stream_callback: Cell::new(false),
            dispatches_from_streams: Cell::new(0),
            context_switch_is_noop: Cell::new(false),
            context_switches: Cell::new(0),
        }
    }

    /// Opens stream `id` with these headers and makes it current.
    pub fn open_stream(&self, id: u32, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.streams.borrow_mut().insert(
            id,
            StreamRecord {
                headers,
                ..StreamRecord::default()
            },
        );
        self.current.set(id);
    }

    /// What happened to stream `id`.
    pub fn stream(&self, id: u32) -> StreamRecord {
        self.streams.borrow().get(&id).cloned().unwrap_or_default()
    }

    /// Ends stream `id` (the host deleted it).
    pub fn close_stream(&self, id: u32) {
        self.streams.borrow_mut().remove(&id);
    }

    /// A counter's value (0 when never incremented).
    pub fn counter(&self, name: &str) -> i64 {
        self.counters.borrow().get(name).copied().unwrap_or(0)
    }

    /// Sets what the next call-response callback reads.
    pub fn respond(&self, status: &str, body: &[u8]) {
        *self.call_response.borrow_mut() = (status.to_owned(), body.to_vec());
    }

    fn with_current<R>(&self, f: impl FnOnce(&mut StreamRecord) -> R) -> Option<R> {
        self.streams
            .borrow_mut()
            .get_mut(&self.current.get())
            .map(f)
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        self.with_current(|s| s.headers.clone()).unwrap_or_default()
    }

    fn route_name(&self) -> Option<String> {
        self.route_name.borrow().clone()
    }

    fn set_request_header(&self, name: &str, value: &str) {
        self.with_current(|s| {
            s.headers.retain(|(k, _)| k != name);
            s.headers.push((name.to_owned(), value.to_owned()));
        });
    }

    fn remove_request_header(&self, name: &str) {
        self.with_current(|s| s.headers.retain(|(k, _)| k != name));
    }

    fn send_response(&self, status: u32, headers: &[(String, String)], body: &[u8]) {
        self.with_current(|s| {
            s.reply = Some(Reply {
                status,
                headers: headers.to_vec(),
                body: String::from_utf8_lossy(body).into_owned(),
            })
        });
    }

    fn resume_request(&self) -> bool {
        self.with_current(|s| s.resumed = true).is_some()
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        self.context_switches.set(self.context_switches.get() + 1);
        if self.context_switch_is_noop.get() {
            return true;
        }
        if self.streams.borrow().contains_key(&context_id) {
            self.current.set(context_id);
            true
        } else {
            false
        }
    }

    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().values.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set_shared(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        let mut store = self.shared.borrow_mut();
        if let Some(want) = cas {
            let have = store.values.get(key).map(|(_, c)| *c);
            if have != Some(want) {
                return Err(SharedWriteError::CasMismatch);
            }
        }
        store.next_cas += 1;
        let next = store.next_cas;
        store.values.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        _timeout_ms: u64,
    ) -> Result<u32, String> {
        if self.in_stream_callback.get() {
            self.dispatches_from_streams
                .set(self.dispatches_from_streams.get() + 1);
            return Err("dispatched from a stream context".into());
        }
        if !self.clusters.iter().any(|c| c == cluster) {
            return Err("BadArgument".into());
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        self.calls.borrow_mut().push(Call {
            token,
            cluster: cluster.to_owned(),
            path: get(":path"),
            authority: get(":authority"),
        });
        Ok(token)
    }

    fn call_response_headers(&self) -> Vec<(String, String)> {
        vec![(":status".into(), self.call_response.borrow().0.clone())]
    }

    fn call_response_body(&self, max: usize) -> Option<Vec<u8>> {
        let body = &self.call_response.borrow().1;
        Some(body.iter().take(max).copied().collect())
    }

    fn set_tick_period_ms(&self, ms: u64) {
        self.tick_ms.set(ms);
    }

    fn increment_counter(&self, name: &str, delta: i64) {
        *self
            .counters
            .borrow_mut()
            .entry(name.to_owned())
            .or_insert(0) += delta;
    }

    fn set_gauge(&self, name: &str, value: u64) {
        self.gauges.borrow_mut().insert(name.to_owned(), value);
    }
}
