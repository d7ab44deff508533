//! The image spec, as `stevedore build` and a launcher read it: strict
//! JSON of a known version. It may be refused, never crash, and its error,
//! escaped for the terminal, holds no control character.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = stevedore::spec::Spec::parse(data) {
        let shown = stevedore::terminal::escape(&format!("{e:#}"));
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
    }
});
