//! The module's allocator: free lists of small blocks in front of the system allocator
//! (issue #13).
//!
//! In wasm32-wasip1 Rust's `System` allocator is wasi-libc's dlmalloc, compiled into the
//! module: ~120 instructions per `malloc` and ~130 per `free` in V8, 9 KB and 3 KB of machine
//! code that every request runs through cold (`make bench-footprint`). A distinct token's
//! decision allocates ~48 times (JSON member names and values, decoded segments, the RSA
//! numbers, the decision's header lists), a cache hit ~11 times, all but a few of them
//! blocks under 1 KiB that are freed before the request ends. Here a block of up to [`LARGEST`] bytes
//! comes from a per-size free list (16-byte classes up to 256 bytes, 64-byte classes up to
//! 1,024) and goes back to it: a few loads and
//! stores each way. Larger or over-aligned layouts, and a list's first blocks, come from
//! `System`.
//!
//! Memory: a freed small block stays in its list for the next allocation of its class, up to
//! [`KEEP`] blocks per class (at most ~330 KiB in all, after a burst); past that it goes back to `System`,
//! so a burst of small allocations (a large key set being read) does not stay reserved for
//! small blocks only.
//!
//! A block is returned to the list of the size its `dealloc` names, as `GlobalAlloc` requires
//! of every caller. That includes the buffers a host fills: the SDK's
//! `proxy_on_memory_allocate` allocates the size the host asks for, and the SDK rebuilds the
//! buffer with the size the host then reports, which Envoy (proxy-wasm-cpp-host's
//! `copyToPointerSize`) and ngx_wasm_module report as the same number. (A host can write
//! anywhere in the module's memory anyway: it is trusted with it.)
//!
//! A Wasm module without threads runs one thing at a time, which is what makes the unguarded
//! lists sound: the `Sync` this needs as a `#[global_allocator]` is implemented for wasm32
//! without the `atomics` feature only. Natively the type is used by its tests alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Classes up to [`SMALL`] bytes are multiples of this...
const GRANULE: usize = 16;
const SMALL: usize = 256;
/// ... and above it multiples of this, up to [`LARGEST`].
const WIDE_GRANULE: usize = 64;
/// The largest size served from the lists.
const LARGEST: usize = 1024;
/// Number of classes: blocks of 16, 32, ..., 256 bytes, then 320, 384, ..., 1024.
const CLASSES: usize = SMALL / GRANULE + (LARGEST - SMALL) / WIDE_GRANULE;
/// The largest alignment served from the lists: what `System` gives any `malloc` in
/// wasm32 (8); a layout asking more goes to `System`'s aligned path.
const ALIGN: usize = 8;
/// Blocks a class's list keeps at most.
const KEEP: u16 = 32;

/// Per class: the first free block (each free block holds the address of the next in its
/// first bytes) and the list's length.
struct Lists {
    head: [*mut u8; CLASSES],
    len: [u16; CLASSES],
}

/// Free lists of small blocks in front of [`System`]: see the module documentation.
pub struct SizeClasses {
    lists: UnsafeCell<Lists>,
}

// SAFETY: a wasm32 module without the `atomics` feature has one thread: `&self` is never
// used by two threads at once.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    /// Empty lists.
    pub const fn new() -> SizeClasses {
        SizeClasses {
            lists: UnsafeCell::new(Lists {
                head: [ptr::null_mut(); CLASSES],
                len: [0; CLASSES],
            }),
        }
    }

    /// The class serving `layout`, if any.
    #[inline]
    fn class(layout: Layout) -> Option<usize> {
        let size = layout.size();
        if size == 0 || size > LARGEST || layout.align() > ALIGN {
            None
        } else if size <= SMALL {
            Some((size - 1) / GRANULE)
        } else {
            Some(SMALL / GRANULE + (size - SMALL - 1) / WIDE_GRANULE)
        }
    }

    /// The layout of a class's blocks, as requested from `System`.
    #[inline]
    fn block(class: usize) -> Layout {
        let small = SMALL / GRANULE;
        let size = if class < small {
            (class + 1) * GRANULE
        } else {
            SMALL + (class + 1 - small) * WIDE_GRANULE
        };
        // At most 1,024 bytes with alignment 8: always a valid layout. Were it not, the
        // largest block (never smaller than a class's) rather than an undersized one.
        Layout::from_size_align(size, ALIGN).unwrap_or(Layout::new::<[u64; LARGEST / 8]>())
    }

    /// The number of blocks in each class's list.
    #[cfg(test)]
    fn kept(&self) -> [u16; CLASSES] {
        // SAFETY: single-threaded (see `Sync`); no reference into the lists is alive.
        unsafe { (*self.lists.get()).len }
    }
}

impl Default for SizeClasses {
    fn default() -> SizeClasses {
        SizeClasses::new()
    }
}

// SAFETY: every block handed out is either a fresh `System` allocation of the class's size
// and alignment (at least the layout's) or one handed back by `dealloc` for the same class;
// a block is in at most one list and never handed out twice; everything else is `System`'s.
unsafe impl GlobalAlloc for SizeClasses {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = SizeClasses::class(layout) else {
            // SAFETY: the caller's contract (a layout of non-zero size) is passed on.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded; the reference ends before any other use of the lists.
        let lists = unsafe { &mut *self.lists.get() };
        match (lists.head.get_mut(class), lists.len.get_mut(class)) {
            (Some(head), Some(len)) if !head.is_null() => {
                let block = *head;
                // SAFETY: a listed block is ours, at least 16 bytes, aligned to 8, and holds
                // the next block's address (written by `dealloc`).
                *head = unsafe { block.cast::<*mut u8>().read() };
                *len -= 1;
                block
            }
            // SAFETY: a valid non-zero layout.
            _ => unsafe { System.alloc(SizeClasses::block(class)) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = SizeClasses::class(layout) else {
            // SAFETY: `block` came from `System.alloc(layout)` (same layout: the caller's
            // contract).
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: single-threaded; the reference ends before any other use of the lists.
        let lists = unsafe { &mut *self.lists.get() };
        match (lists.head.get_mut(class), lists.len.get_mut(class)) {
            (Some(head), Some(len)) if *len < KEEP => {
                // SAFETY: the block is the class's size (≥ 16 bytes), aligned to 8, and no
                // longer used by the caller: its first bytes can hold the link.
                unsafe { block.cast::<*mut u8>().write(*head) };
                *head = block;
                *len += 1;
            }
            // SAFETY: small blocks all come from `System` with the class's layout.
            _ => unsafe { System.dealloc(block, SizeClasses::block(class)) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        match (SizeClasses::class(layout), SizeClasses::class(new_layout)) {
            // The block already has room (its class's size).
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: both layouts are `System`'s own, as in `alloc`.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: the caller's contract: `block` is live with `layout`, new_size is
                // non-zero; the two blocks are distinct allocations.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap_or(Layout::new::<u8>())
    }

    #[test]
    fn small_blocks_are_reused_by_class() {
        let heap = SizeClasses::new();
        unsafe {
            let a = heap.alloc(layout(20, 4));
            heap.dealloc(a, layout(20, 4));
            assert_eq!(heap.kept()[1], 1);
            // 17..=32 bytes share a class: the same block comes back.
            let b = heap.alloc(layout(32, 8));
            assert_eq!(a, b);
            assert_eq!(heap.kept()[1], 0);
            // Another class does not take it.
            heap.dealloc(b, layout(32, 8));
            let c = heap.alloc(layout(48, 8));
            assert_ne!(c, b);
            heap.dealloc(c, layout(48, 8));
            assert_eq!(heap.kept()[..3], [0, 1, 1]);
        }
    }

    #[test]
    fn class_boundaries() {
        let class = |size| SizeClasses::class(layout(size, 8));
        assert_eq!(
            [class(1), class(16), class(17), class(256)],
            [Some(0), Some(0), Some(1), Some(15)]
        );
        assert_eq!(
            [class(257), class(320), class(321), class(1024)],
            [Some(16), Some(16), Some(17), Some(27)]
        );
        assert_eq!(
            [class(1025), class(0), SizeClasses::class(layout(8, 16))],
            [None; 3]
        );
        for size in 1..=LARGEST {
            let c = class(size).unwrap_or(CLASSES);
            let block = SizeClasses::block(c).size();
            assert!(
                c < CLASSES && block >= size && block - size < WIDE_GRANULE,
                "{size}"
            );
        }
    }

    #[test]
    fn large_and_over_aligned_layouts_go_to_the_system() {
        let heap = SizeClasses::new();
        unsafe {
            for l in [layout(LARGEST + 1, 8), layout(64, 16), layout(4096, 4096)] {
                let p = heap.alloc(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % l.align(), 0);
                heap.dealloc(p, l);
            }
        }
        assert_eq!(heap.kept(), [0; CLASSES]);
    }

    #[test]
    fn lists_keep_at_most_keep_blocks() {
        let heap = SizeClasses::new();
        let l = layout(100, 8);
        unsafe {
            let blocks: Vec<*mut u8> = (0..KEEP + 10).map(|_| heap.alloc(l)).collect();
            for &b in &blocks {
                heap.dealloc(b, l);
            }
            assert_eq!(heap.kept()[6], KEEP);
        }
    }

    /// Random allocations, reallocations and frees of every size class and beyond, each
    /// block filled with a pattern of its own and checked before it is freed or moved: no
    /// block is handed out twice and realloc keeps the contents.
    #[test]
    fn random_use_keeps_every_block_intact() {
        let heap = SizeClasses::new();
        let mut rng = TestRng(0x4ea9);
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let check = |p: *mut u8, l: Layout, tag: u8| unsafe {
            (0..l.size()).all(|i| *p.add(i) == tag.wrapping_add(i as u8))
        };
        let fill = |p: *mut u8, l: Layout, tag: u8| unsafe {
            for i in 0..l.size() {
                *p.add(i) = tag.wrapping_add(i as u8);
            }
        };
        for round in 0..20_000u32 {
            let action = rng.below(3);
            if action == 0 || live.is_empty() {
                let bound = if rng.below(4) == 0 { 1000 } else { LARGEST };
                let size = 1 + rng.below(bound);
                let l = layout(size, 1 << rng.below(5));
                let p = unsafe { heap.alloc(l) };
                assert!(!p.is_null() && p as usize % l.align() == 0);
                let tag = round as u8;
                fill(p, l, tag);
                live.push((p, l, tag));
            } else {
                let (p, l, tag) = live.swap_remove(rng.below(live.len()));
                assert!(
                    check(p, l, tag),
                    "round {round}: block of {l:?} overwritten"
                );
                if action == 1 {
                    unsafe { heap.dealloc(p, l) };
                } else {
                    let new_size = 1 + rng.below(2 * LARGEST);
                    let q = unsafe { heap.realloc(p, l, new_size) };
                    assert!(!q.is_null());
                    let kept = layout(l.size().min(new_size), l.align());
                    assert!(
                        check(q, kept, tag),
                        "round {round}: realloc lost the contents"
                    );
                    let nl = layout(new_size, l.align());
                    fill(q, nl, tag);
                    live.push((q, nl, tag));
                }
            }
        }
        for (p, l, tag) in live {
            assert!(check(p, l, tag));
            unsafe { heap.dealloc(p, l) };
        }
    }
}
