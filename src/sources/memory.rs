//! Shared data in memory, with Envoy's semantics: a value and a CAS token per key, a write
//! with a token succeeds only while the key still holds it, a write without one always
//! succeeds. The fake host and the key-source and DPoP tests run against it; it is public so
//! that tests outside the crate use the same one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use crate::sources::{SharedData, WriteError};

/// One proxy's shared data (see the module docs).
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// Keys a write without a CAS token replaced while they held a value (Envoy allows
    /// that; a write computed from a read never needs it).
    pub blind_overwrites: RefCell<Vec<String>>,
    /// Writes still to refuse with a CAS mismatch, as if another VM always wrote first.
    pub lose: Cell<u32>,
}

impl MemoryStore {
    /// Puts `value` under `key` directly (a test's corrupt or foreign record), with the CAS
    /// token `cas`.
    pub fn put(&self, key: &str, value: &[u8], cas: u32) {
        self.values
            .borrow_mut()
            .insert(key.to_owned(), (value.to_vec(), cas));
    }
}

impl SharedData for MemoryStore {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.values.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), WriteError> {
        if self.lose.get() > 0 {
            self.lose.set(self.lose.get() - 1);
            return Err(WriteError::CasMismatch);
        }
        let mut values = self.values.borrow_mut();
        match (values.get(key), cas) {
            (Some((_, have)), Some(want)) if *have != want => return Err(WriteError::CasMismatch),
            (Some(_), None) => self.blind_overwrites.borrow_mut().push(key.to_owned()),
            _ => {}
        }
        self.next_cas.set(self.next_cas.get().wrapping_add(1));
        values.insert(key.to_owned(), (value.to_vec(), self.next_cas.get()));
        Ok(())
    }
}
