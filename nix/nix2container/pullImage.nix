# nix2container's pullImage: an image pinned by digest, in the store.
# stevedore's pullImage with nix2container's arguments; its result (a
# docker-archive) is a fromImage for both APIs. `sha256` is the hash of
# that archive (flat), not of nix2container's directory: build once with
# a fake hash and take the one Nix reports. See docs/API.md.
{
  # stevedore's pullImage (nix/pullImage.nix).
  pullImage,
  # The OCI architecture of the library's `system`.
  systemArchitecture,
}:
{
  # The repository, with its registry host first; a name without a host
  # is on Docker Hub.
  imageName,
  # The manifest (or index) digest, "sha256:<64 hex>".
  imageDigest,
  # The hash of the archive.
  sha256,
  # The platform to pick from an index.
  os ? "linux",
  arch ? systemArchitecture,
  # false: plain http and any certificate (local registries).
  tlsVerify ? true,
  # The derivation name.
  name ? null,
}:
pullImage {
  inherit
    imageName
    imageDigest
    sha256
    os
    arch
    tlsVerify
    name
    ;
}
