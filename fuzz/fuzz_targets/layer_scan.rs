//! One layer blob (a tar, gzip or zstd) read on top of a fresh view, with
//! small limits: it may be refused, never crash, hang or run out of memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stevedore::base::scan::{Limits, View, read_layer};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_layer_bytes: 8 << 20,
        max_ratio: 100,
        ratio_floor: 1 << 20,
    };
    let mut view = View::default();
    let mut kept = Vec::new();
    let first = read_layer(
        "layer",
        0,
        data,
        Some(data.len() as u64),
        limits,
        Some(&mut kept),
    );
    if view.apply(first).is_ok()
    {
        // A second layer on top: whiteouts and parents checked against
        // what the first left.
        let _ = view.apply(read_layer("layer 2", 1, data, None, limits, None));
        for (path, entry) in view.iter() {
            assert!(!path.starts_with(b"/"), "absolute path in the view");
            assert!(
                !path.split(|&b| b == b'/').any(|c| c == b".." || c.is_empty()),
                "unnormalised path in the view"
            );
            if entry.layer == 0 && entry.size > 0 {
                assert!(entry.offset + entry.size <= kept.len() as u64);
            }
        }
    }
});
