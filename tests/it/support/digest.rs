//! SHA-256 digests of bytes, as OCI and docker-archives name blobs.

/// The SHA-256 of some bytes, as `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
