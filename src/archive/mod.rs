//! Layer tars: which entries a layer holds ([`plan`]), how they are encoded
//! ([`header`]) and written ([`write`](mod@write)). Every byte is fixed by the image spec
//! and the store contents, never by the host.

pub mod header;
pub mod plan;
pub mod write;

pub use plan::{Entry, LayerPlan, LayerSource, Role};
pub use write::{TarOut, write_layer};

/// Who owns an entry, as recorded in the tar header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
    pub uname: String,
    pub gname: String,
}

impl Owner {
    /// uid 0, gid 0, `root`/`root`.
    pub fn root() -> Owner {
        Owner {
            uid: 0,
            gid: 0,
            uname: "root".into(),
            gname: "root".into(),
        }
    }
}
