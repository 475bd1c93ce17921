//! A fake host that records outcomes (replies, header changes, resumes, callouts, counters)
//! instead of scripting host calls, so adapter tests survive refactors. Several fake VMs can
//! share one [`SharedStore`], as Envoy's VMs share one proxy's shared data.
//!
//! Two profiles: Envoy's, and ngx_wasm_module's ([`FakeHost::ngx`]): there
//! `set_effective_context` does nothing, a stream touched outside its own callback is a
//! crashed worker (counted), and a removed request header is only hidden from the filter: it
//! stays in the list NGINX's proxy module sends upstream ([`StreamRecord::upstream`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::filter::host::Host;
use crate::sources::{SharedData, WriteError};
use crate::time::{Millis, UnixMillis};

/// Shared data with CAS, as proxy-wasm-cpp-host implements it (one global counter).
pub type SharedStore = crate::sources::memory::MemoryStore;

/// A local reply the adapter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The root context's id: calls dispatched from it are answered to it.
pub const ROOT: u32 = 0;

/// A call the adapter dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    /// The context that dispatched it, which receives the answer ([`ROOT`] or a stream).
    pub from: u32,
    pub cluster: String,
    pub path: String,
    pub authority: String,
}

/// One request header entry; `hidden` entries are ngx_wasm_module's removed ones (hash 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub value: String,
    pub hidden: bool,
}

/// One stream as the fake host sees it.
#[derive(Debug, Clone, Default)]
pub struct StreamRecord {
    pub entries: Vec<Entry>,
    pub reply: Option<Reply>,
    pub resumed: bool,
    /// `set_property` calls, in order (name, value).
    pub properties: Vec<(String, String)>,
    /// `set_property` calls made after the local reply (Envoy's access log may miss them).
    pub properties_after_reply: u32,
}

impl StreamRecord {
    /// What the upstream receives: every entry (Envoy deletes removed headers; NGINX's proxy
    /// module writes hidden ones too).
    pub fn upstream(&self) -> Vec<(&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
            .collect()
    }

    /// Every value the upstream receives for `name`.
    pub fn upstream_values(&self, name: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| e.name == name)
            .map(|e| e.value.as_str())
            .collect()
    }

    /// What the filter reads.
    fn visible(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|e| !e.hidden)
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect()
    }
}

/// The fake host of one VM.
#[derive(Debug)]
pub struct FakeHost {
    /// The clock, set by the tests.
    pub now_ms: Cell<UnixMillis>,
    pub shared: Rc<RefCell<SharedStore>>,
    pub streams: RefCell<BTreeMap<u32, StreamRecord>>,
    pub current: Cell<u32>,
    pub route_name: RefCell<Option<String>>,
    /// What `connection.sha256_peer_certificate_digest` holds, and how often it was read.
    pub peer_certificate_digest: RefCell<Option<String>>,
    pub peer_certificate_reads: Cell<u32>,
    /// `add_request_header` calls (the adapter adds a header it knows is absent).
    pub header_adds: Cell<u32>,
    /// Refuse every request-header change (a host answering other than Ok): nothing changes.
    pub refuse_header_changes: Cell<bool>,
    pub calls: RefCell<Vec<Call>>,
    next_token: Cell<u32>,
    /// The response the next `call_response_*` reads: status and body.
    pub call_response: RefCell<(String, Vec<u8>)>,
    pub counters: RefCell<BTreeMap<String, i64>>,
    pub gauges: RefCell<BTreeMap<String, u64>>,
    pub tick_ms: Cell<Millis>,
    /// Clusters that exist; dispatching to another fails as Envoy's does.
    pub clusters: Vec<String>,
    /// Set while a stream callback runs: a call dispatched then would be answered to the
    /// stream, not to the root context, so the fake refuses it and counts it.
    pub in_stream_callback: Cell<bool>,
    pub dispatches_from_streams: Cell<u32>,
    /// ngx_wasm_module's profile (see the module docs).
    pub ngx: bool,
    /// `set_effective_context` calls.
    pub context_switches: Cell<u32>,
    /// ngx profile: stream host calls made outside a stream callback (a crashed worker there).
    pub root_stream_ops: Cell<u32>,
}

impl FakeHost {
    /// A VM on `shared`, at time `now`, with these clusters.
    pub fn new(shared: Rc<RefCell<SharedStore>>, now: UnixMillis, clusters: &[&str]) -> FakeHost {
        FakeHost {
            now_ms: Cell::new(now),
            shared,
            streams: RefCell::new(BTreeMap::new()),
            current: Cell::new(0),
            route_name: RefCell::new(None),
            peer_certificate_digest: RefCell::new(None),
            peer_certificate_reads: Cell::new(0),
            header_adds: Cell::new(0),
            refuse_header_changes: Cell::new(false),
            calls: RefCell::new(Vec::new()),
            next_token: Cell::new(1),
            call_response: RefCell::new((String::new(), Vec::new())),
            counters: RefCell::new(BTreeMap::new()),
            gauges: RefCell::new(BTreeMap::new()),
            tick_ms: Cell::new(Millis::ZERO),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            in_stream_callback: Cell::new(false),
            dispatches_from_streams: Cell::new(0),
            ngx: false,
            context_switches: Cell::new(0),
            root_stream_ops: Cell::new(0),
        }
    }

    /// A VM of ngx_wasm_module's profile.
    pub fn ngx(shared: Rc<RefCell<SharedStore>>, now: UnixMillis, clusters: &[&str]) -> FakeHost {
        FakeHost {
            ngx: true,
            ..FakeHost::new(shared, now, clusters)
        }
    }

    /// Opens stream `id` with these headers and makes it current.
    pub fn open_stream(&self, id: u32, headers: &[(&str, &str)]) {
        let entries = headers
            .iter()
            .map(|(k, v)| Entry {
                name: k.to_string(),
                value: v.to_string(),
                hidden: false,
            })
            .collect();
        self.streams.borrow_mut().insert(
            id,
            StreamRecord {
                entries,
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
        if self.ngx && !self.in_stream_callback.get() {
            self.root_stream_ops.set(self.root_stream_ops.get() + 1);
            return None;
        }
        self.streams
            .borrow_mut()
            .get_mut(&self.current.get())
            .map(f)
    }
}

impl SharedData for FakeHost {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.shared.borrow().read(key)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), WriteError> {
        self.shared.borrow().compare_and_swap(key, value, cas)
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> UnixMillis {
        self.now_ms.get()
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        self.with_current(|s| s.visible()).unwrap_or_default()
    }

    fn route_name(&self) -> Option<String> {
        self.route_name.borrow().clone()
    }

    fn peer_certificate_digest(&self) -> Option<String> {
        self.peer_certificate_reads
            .set(self.peer_certificate_reads.get() + 1);
        self.peer_certificate_digest.borrow().clone()
    }

    fn set_request_header(&self, name: &str, value: &str) -> bool {
        if self.refuse_header_changes.get() {
            return false;
        }
        let ngx = self.ngx;
        self.with_current(|s| {
            if !ngx {
                s.entries.retain(|e| e.name != name);
            } else {
                // ngx_http_wasm_set_header_helper, SET: the first visible match takes the
                // value; with more than one match every match ends hidden (its restart loop
                // hides the updated one too), values in place.
                let mut matches = s.entries.iter_mut().filter(|e| !e.hidden && e.name == name);
                if let Some(first) = matches.next() {
                    first.value = value.to_owned();
                    let mut more = false;
                    for e in matches {
                        e.hidden = true;
                        more = true;
                    }
                    if more {
                        for e in s.entries.iter_mut().filter(|e| e.name == name) {
                            e.hidden = true;
                        }
                    }
                    return;
                }
            }
            s.entries.push(Entry {
                name: name.to_owned(),
                value: value.to_owned(),
                hidden: false,
            });
        })
        .is_some()
    }

    fn add_request_header(&self, name: &str, value: &str) -> bool {
        if self.refuse_header_changes.get() {
            return false;
        }
        self.header_adds.set(self.header_adds.get() + 1);
        // Both hosts append, whatever the map already holds.
        self.with_current(|s| {
            s.entries.push(Entry {
                name: name.to_owned(),
                value: value.to_owned(),
                hidden: false,
            })
        })
        .is_some()
    }

    fn remove_request_header(&self, name: &str) -> bool {
        if self.refuse_header_changes.get() {
            return false;
        }
        let ngx = self.ngx;
        self.with_current(|s| {
            if ngx {
                // Hash set to 0: gone for the filter, still in the list.
                for e in s.entries.iter_mut().filter(|e| e.name == name) {
                    e.hidden = true;
                }
            } else {
                s.entries.retain(|e| e.name != name);
            }
        })
        .is_some()
    }

    fn set_property(&self, name: &str, value: &[u8]) {
        self.with_current(|s| {
            if s.reply.is_some() {
                s.properties_after_reply += 1;
            }
            s.properties
                .push((name.to_owned(), String::from_utf8_lossy(value).into_owned()))
        });
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
        if self.ngx {
            return true;
        }
        if self.streams.borrow().contains_key(&context_id) {
            self.current.set(context_id);
            true
        } else {
            false
        }
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        _timeout_ms: Millis,
    ) -> Result<u32, String> {
        // The adapter dispatches from the root context only, which receives the answers.
        let from = if self.in_stream_callback.get() {
            self.dispatches_from_streams
                .set(self.dispatches_from_streams.get() + 1);
            if !self.ngx {
                return Err("dispatched from a stream context".into());
            }
            self.current.get()
        } else {
            ROOT
        };
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
            from,
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

    fn set_tick_period_ms(&self, ms: Millis) {
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
