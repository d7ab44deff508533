# nix2container's pullImageFromManifest: a base image pinned by a
# manifest lock file kept with the sources, each blob fetched by its own
# fixed-output derivation (whose hash is the blob's digest), so blobs are
# downloaded once and shared by every image that has them:
#
#   base = stevedore.nix2container.pullImageFromManifest {
#     imageName = "library/alpine";
#     imageManifest = ./alpine-manifest.json;
#   };
#   nix run .#base.getManifest > alpine-manifest.json   # writes the lock
#
# The result is an OCI layout, a fromImage for both APIs. See docs/API.md.
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
  # storeSafeName.nix.
  storeSafeName,
  # The OCI architecture of the library's `system`.
  systemArchitecture,
}:
{
  # The repository on `registryUrl` ("library/alpine").
  imageName,
  # The lock file: the image manifest, as getManifest writes it. null
  # only to build getManifest before there is one.
  imageManifest ? null,
  # The tag getManifest reads, and the tag the layout names the image by.
  imageTag ? "latest",
  # The platform getManifest picks from an index.
  os ? "linux",
  arch ? systemArchitecture,
  # false: plain http and any certificate (local registries).
  tlsVerify ? true,
  # The registry's host (and port).
  registryUrl ? "registry-1.docker.io",
}:
let
  fn = "nix2container.pullImageFromManifest";
  repo = "${registryUrl}/${imageName}";
  tls =
    if builtins.isBool tlsVerify then tlsVerify else throw "${fn}: tlsVerify must be true or false";
  getManifest =
    (helperDerivation "get-manifest" {
      job = "launcher";
      name = "get-manifest";
      action = "get-manifest";
      image = "docker://${repo}:${imageTag}";
      platform = {
        inherit os;
        architecture = arch;
      };
      tlsVerify = tls;
    } { })
    // {
      meta.mainProgram = "get-manifest";
    };
  manifest =
    if imageManifest == null then
      throw "${fn}: imageManifest is needed to pull; write it with `nix run .#IMAGE.getManifest > manifest.json` and give imageManifest = ./manifest.json"
    else
      builtins.fromJSON (builtins.readFile imageManifest);
  descriptors =
    if manifest ? config && manifest ? layers then
      [ manifest.config ] ++ manifest.layers
    else
      throw "${fn}: ${toString imageManifest} is not an image manifest (no config and layers); an index lists manifests, so write the lock with getManifest, which picks the platform's";
  hexOf =
    d:
    let
      m = builtins.match "sha256:([0-9a-f]{64})" d;
    in
    if m == null then throw "${fn}: digest ${builtins.toJSON d} in ${toString imageManifest} is not sha256:<64 hex>" else builtins.head m;
  # Each blob its own fixed-output derivation, named by its digest.
  blob =
    d:
    helperDerivation (hexOf d.digest) {
      job = "fetch-blob";
      imageName = repo;
      inherit (d) digest size;
      tlsVerify = tls;
    } {
      outputHashMode = "flat";
      outputHashAlgo = "sha256";
      outputHash = hexOf d.digest;
      impureEnvVars = [
        "http_proxy"
        "https_proxy"
        "no_proxy"
        "SSL_CERT_FILE"
        "NIX_SSL_CERT_FILE"
      ];
    };
  image = helperDerivation "nix2container-${storeSafeName imageName}" {
    job = "blob-layout";
    manifest =
      if builtins.isPath imageManifest then
        "${builtins.path {
          path = imageManifest;
          name = "manifest.json";
        }}"
      else
        "${imageManifest}";
    blobs = builtins.listToAttrs (
      map (d: {
        name = d.digest;
        value = "${blob d}";
      }) descriptors
    );
    tag = "${imageName}:${imageTag}";
  } { };
in
image
// {
  inherit getManifest imageName imageTag;
}
