# mergeImages: several images in one docker-archive, so that one
# `podman load` or `docker load` loads them all, as dockerTools'
# mergeImages:
#
#   stevedore.mergeImages [ app db tools ]
#   podman load -i result
#
# Layer blobs and configs are copied byte for byte, each once; see
# docs/API.md.
{
  # internal/archiveDerivation.nix: name: job: extra: derivation.
  archiveDerivation,
  # The copyTo* apps of the result (internal/copyTo.nix).
  copyTo,
}:
# A non-empty list of images, each a derivation or path: a docker-archive
# (compressed as a whole or not, holding one image or several), an OCI
# layout or oci-archive, or a streamLayeredImage result.
images:
let
  fn = "mergeImages";
  list =
    if builtins.isList images && images != [ ] then
      images
    else
      throw "${fn}: takes a non-empty list of images, such as [ app db ]";
  asString =
    i: image:
    if builtins.isAttrs image || builtins.isPath image || builtins.isString image then
      "${image}"
    else
      throw "${fn}: image ${toString (i + 1)} of the list is not an image (a derivation or a path)";
  merged = archiveDerivation "merge-docker-images" {
    job = "merge";
    images = builtins.genList (i: asString i (builtins.elemAt list i)) (builtins.length list);
  } { };
in
merged // copyTo merged
