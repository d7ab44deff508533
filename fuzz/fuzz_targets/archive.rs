//! An image file (docker-archive, oci-archive, compressed or not) as
//! `fromImage`/`exportImage` read it: manifest.json, index.json and config
//! parsing, member lookup, then every layer. It may be refused, never
//! crash.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use stevedore::base::Pick;

fuzz_target!(|data: &[u8]| {
    // A spec or launcher would be built from the store: not what this
    // target is about.
    if data.starts_with(b"#!") || data.starts_with(b"{") {
        return;
    }
    // SAFETY: set once, before any thread reads the environment.
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| unsafe {
        std::env::set_var("STEVEDORE_MAX_LAYER_BYTES", "8388608");
    });
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(data).unwrap();
    file.flush().unwrap();
    let _ = stevedore::stored::open(file.path(), &Pick::Only, "fuzz");
    let _ = stevedore::source::open_base(
        file.path(),
        &Pick::Named {
            name: None,
            tag: None,
        },
        true,
    );
});
