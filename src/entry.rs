//! The kinds of file-system entry an image layer holds: the one list that
//! base layers are read into, layers are planned from and tar headers are
//! written for.

/// What an entry is. Hard links are not a kind: stevedore writes their
/// content as a regular file, so an optimised store gives the same bytes
/// as an unoptimised one. Devices and fifos come only from base images;
/// their numbers are those the image recorded, never the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}
