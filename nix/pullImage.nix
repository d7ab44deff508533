# pullImage: an image from a registry, pinned by its manifest digest, as a
# docker-archive in the store:
#
#   stevedore.pullImage {
#     imageName = "registry.example.com/library/alpine";
#     imageDigest = "sha256:...";
#     hash = "sha256-...";
#   }
#   podman load -i result
#
# A fixed-output derivation whose builder is the stevedore helper: it pulls
# by digest, checks every blob, and writes the archive deterministically
# (layer blobs as pulled, byte for byte), so the same arguments give the
# same hash on every machine. Arguments as dockerTools.pullImage; see
# docs/API.md.
{
  # internal/helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
  # Argument checks (internal/checks.nix).
  checks,
  # internal/hasRegistryHost.nix and internal/storeSafeName.nix.
  hasRegistryHost,
  storeSafeName,
  # The OCI architecture of the library's `system`.
  systemArchitecture,
  # The copyTo* apps of the result (internal/copyTo.nix).
  copyTo,
}:
{
  # The repository, with its registry host first
  # ("registry.example.com/team/app"); a name without a host
  # ("nixos/nix", "alpine") is on Docker Hub, as in dockerTools.
  imageName,
  # The manifest digest to pull, "sha256:<64 hex>" (an index is followed
  # to the manifest of `os` and `arch`).
  imageDigest,
  # The hash of the resulting archive: `hash` (SRI, "sha256-...") or the
  # older `sha256` (base32 or hex). Give exactly one.
  hash ? null,
  sha256 ? null,
  # The name and tag the archive gives the image (what `podman load`
  # names it).
  finalImageName ? imageName,
  finalImageTag ? "latest",
  # The platform to pick from an index.
  os ? "linux",
  arch ? systemArchitecture,
  # false: accept plain http and self-signed certificates (local
  # registries).
  tlsVerify ? true,
  # The derivation name.
  name ? null,
}:
let
  fn = "pullImage";
  # Docker Hub's registry, and its `library/` for official images.
  reference =
    if hasRegistryHost imageName then
      imageName
    else if builtins.length (builtins.split "/" imageName) == 1 then
      "registry-1.docker.io/library/${imageName}"
    else
      "registry-1.docker.io/${imageName}";
  digest =
    if builtins.isString imageDigest && builtins.match "sha256:[0-9a-f]{64}" imageDigest != null then
      imageDigest
    else
      throw "${fn}: imageDigest must be \"sha256:\" and 64 lowercase hex digits, as `skopeo inspect` prints it";
  outputHash =
    if hash != null && sha256 != null then
      throw "${fn}: give hash or sha256, not both"
    else if hash != null then
      { outputHash = hash; }
    else if sha256 != null then
      {
        outputHash = sha256;
        outputHashAlgo = "sha256";
      }
    else
      throw "${fn}: hash is required: build once with hash = \"sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\" and take the hash Nix reports";
  tag = checks.tag fn finalImageTag;
  baseName = storeSafeName finalImageName;
  drvName = if name != null then name else "docker-image-${baseName}-${tag}.tar";
  image =
    helperDerivation drvName
      {
        job = "pull";
        imageName = reference;
        imageDigest = digest;
        finalImageName = checks.name fn finalImageName;
        finalImageTag = tag;
        inherit os arch;
        tlsVerify =
          if builtins.isBool tlsVerify then tlsVerify else throw "${fn}: tlsVerify must be true or false";
      }
      (
        outputHash
        // {
          outputHashMode = "flat";
          # A proxy and a CA bundle of the host may be needed to reach the
          # registry; they do not change the output.
          impureEnvVars = [
            "http_proxy"
            "https_proxy"
            "no_proxy"
            "HTTP_PROXY"
            "HTTPS_PROXY"
            "NO_PROXY"
            "SSL_CERT_FILE"
            "NIX_SSL_CERT_FILE"
          ];
        }
      );
in
image
// {
  inherit imageDigest;
  imageName = finalImageName;
  imageTag = tag;
}
// copyTo image
