//! A deliberately breakable proxy-wasm HTTP filter (ABI 0.2.1, no dependencies), used only by
//! `test_failure_policy.py` to show what Envoy's Wasm `failure_policy` does once a filter's VM
//! has trapped. jwt-edge itself is written to never trap, so the tests need a stand-in.
//!
//! Per request:
//! - `x-trap` header present: executes `unreachable` (a Wasm trap: the VM is now broken);
//! - no `authorization` header: answers 401 itself (it stands in for an auth filter);
//! - otherwise: lets the request through.
//!
//! Built by the test with
//! `rustc --edition 2021 --target wasm32-wasip1 --crate-type cdylib -C opt-level=s`.

use std::alloc::{alloc, Layout};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

const MAP_HTTP_REQUEST_HEADERS: u32 = 0;
const STATUS_OK: u32 = 0;
const ACTION_CONTINUE: u32 = 0;
const ACTION_PAUSE: u32 = 1;

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    match Layout::from_size_align(size.max(1), 8) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, _size: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_context_id: u32, _size: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_context_id: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}

fn has_request_header(name: &str) -> bool {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer it allocated through proxy_on_memory_allocate.
    let status = unsafe {
        proxy_get_header_map_value(
            MAP_HTTP_REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        )
    };
    status == STATUS_OK && !data.is_null()
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _headers: u32, _eos: u32) -> u32 {
    if has_request_header("x-trap") {
        core::arch::wasm32::unreachable();
    }
    if !has_request_header("authorization") {
        let body = b"trap-filter: no credentials";
        let details = b"trap_filter_denied";
        // SAFETY: every pointer is to a live slice of the given length.
        unsafe {
            proxy_send_local_response(
                401,
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                std::ptr::null(),
                0,
                -1,
            );
        }
        return ACTION_PAUSE;
    }
    ACTION_CONTINUE
}
