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
  # The OCI architecture and variant of the library's `system`.
  systemArchitecture,
  systemVariant,
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
  # The hash of the resulting archive: `hash` (SRI, "sha256-..."), the
  # older `sha256` (base32 or hex), or `outputHash` with `outputHashAlgo`
  # as a fetcher's derivation takes them. Give exactly one.
  hash ? null,
  sha256 ? null,
  outputHash ? null,
  outputHashAlgo ? null,
  # The name and tag the archive gives the image (what `podman load`
  # names it).
  finalImageName ? imageName,
  finalImageTag ? "latest",
  # The platform to pick from an index.
  os ? "linux",
  arch ? systemArchitecture,
  # Its variant; null: any. By default the system's for 32-bit ARM
  # ("v7"), where variants tell images apart; null for every other
  # architecture (arm64 indexes often leave out "v8").
  variant ? (if arch == systemArchitecture && arch == "arm" then systemVariant else null),
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
  hashes = builtins.filter (h: h != null) [
    hash
    sha256
    outputHash
  ];
  fixedOutput =
    if builtins.length hashes > 1 then
      throw "${fn}: give one of hash, sha256 and outputHash, not several"
    else if outputHashAlgo != null && outputHash == null then
      throw "${fn}: outputHashAlgo goes with outputHash; give outputHash too, or give hash = \"sha256-...\" alone"
    else if hash != null then
      { outputHash = hash; }
    else if sha256 != null then
      {
        outputHash = sha256;
        outputHashAlgo = "sha256";
      }
    else if outputHash != null then
      (
        if outputHashAlgo == null && builtins.match "[a-z0-9]+-.*" outputHash == null then
          throw "${fn}: outputHash ${builtins.toJSON outputHash} names no algorithm; give it in SRI form (\"sha256-...\") or add outputHashAlgo = \"sha256\""
        else
          { inherit outputHash; } // (if outputHashAlgo == null then { } else { inherit outputHashAlgo; })
      )
    else
      throw "${fn}: hash is required: build once with hash = \"sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\" and take the hash Nix reports";
  tag = checks.tag fn finalImageTag;
  # Lowercased, with a warning, as the image builders' names.
  finalName = checks.name fn finalImageName;
  platformString =
    arg: v:
    if builtins.isString v && builtins.match "[a-z0-9]+" v != null then
      v
    else
      throw "${fn}: ${arg} ${builtins.toJSON v} must be a platform name in OCI terms, such as os = \"linux\" or arch = \"arm64\"";
  baseName = storeSafeName finalImageName;
  drvName = if name != null then name else "docker-image-${baseName}-${tag}.tar";
  image =
    helperDerivation drvName
      (
        {
        job = "pull";
        imageName = reference;
        imageDigest = digest;
        finalImageName = finalName;
        finalImageTag = tag;
        os = platformString "os" os;
        arch = platformString "arch" arch;
        tlsVerify =
          if builtins.isBool tlsVerify then tlsVerify else throw "${fn}: tlsVerify must be true or false";
      }
        # Only given, so a pull of any variant keeps its derivation.
        // (if checks.variant fn variant == null then { } else { inherit variant; })
      )
      (
        fixedOutput
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
  imageName = finalName;
  imageTag = tag;
  # The platform picked from an index (variant null: any), which
  # buildImageIndex reads.
  imagePlatform = {
    inherit os variant;
    architecture = arch;
  };
  # dockerTools' attributes of the pull: what is fetched and what the
  # image is named (attributes of the result, not of the derivation).
  sourceURL = "docker://${imageName}@${imageDigest}";
  destNameTag = "${finalName}:${tag}";
}
// copyTo image
