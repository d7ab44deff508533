//! The wire vocabulary every other module shares: media types, platforms,
//! image references and the one JSON serialisation of documents. It knows
//! nothing of where images come from or go.

pub mod media_type;
pub mod platform;
pub mod reference;

use serde::Serialize;

pub use platform::Platform;
pub use reference::{Reference, Target};

/// JSON with object keys sorted and no whitespace: the one serialisation of
/// every document stevedore writes (configs, manifests, indexes).
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // serde_json's Value keeps object keys in a BTreeMap, so the round trip
    // sorts them whatever map type the input used.
    let value = serde_json::to_value(value).expect("image documents serialise to JSON");
    serde_json::to_vec(&value).expect("JSON values serialise")
}
