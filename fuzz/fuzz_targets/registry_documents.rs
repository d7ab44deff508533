//! What a registry sends, as stevedore reads it: the first byte picks the
//! reader, the rest is the document. A `WWW-Authenticate` challenge, a
//! token server's answer, an error body, an index (the entry for the
//! host's platform) and an image manifest (its config and layers). Each
//! may be refused, never crash; an error body's detail and every error,
//! escaped for the terminal, hold no control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stevedore::digest::Digest;
use stevedore::registry::client::{Challenge, error_detail, token_of_answer};
use stevedore::oci::Platform;
use stevedore::registry::fetch::{image_blobs, index_entry};
use stevedore::oci::media_type::{OCI_INDEX, OCI_MANIFEST};
use stevedore::terminal::escape;

fn printable(text: &str) {
    let shown = escape(text);
    assert!(
        !shown.chars().any(|c| c.is_control()),
        "a control character survived escaping: {shown:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, doc)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(challenge) = Challenge::parse(&String::from_utf8_lossy(doc)) {
                for key in ["realm", "service", "scope"] {
                    let _ = challenge.param(key);
                }
            }
        }
        1 => {
            if let Some(token) = token_of_answer(doc) {
                assert!(!token.is_empty());
            }
        }
        2 => {
            if let Some(detail) = error_detail(doc) {
                assert!(detail.chars().count() <= 400, "{} characters", detail.len());
                printable(&detail);
            }
        }
        3 => match index_entry("fuzz", doc, OCI_INDEX, &Platform::host()) {
            Ok(Some((digest, _size))) => assert!(digest.to_string().starts_with("sha256:")),
            Ok(None) => unreachable!("an index media type is always an index"),
            Err(e) => printable(&format!("{e:#}")),
        },
        _ => match image_blobs("fuzz", &Digest::of(doc), doc, OCI_MANIFEST) {
            Ok(blobs) => assert!(blobs.config.size <= 16 << 20),
            Err(e) => printable(&format!("{e:#}")),
        },
    }
});
