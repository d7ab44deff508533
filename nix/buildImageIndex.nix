# buildImageIndex: one image for several platforms, as an OCI layout in
# the store whose image is an index with one manifest per platform:
#
#   stevedore.buildImageIndex {
#     name = "hello";
#     tag = "1.0";
#     images = [
#       (stevedore.buildLayeredImage { name = "hello"; contents = [ hello ]; })
#       (stevedoreArm64.buildLayeredImage { name = "hello"; contents = [ helloArm64 ]; })
#     ];
#   }
#   stevedore push result docker://registry.example.com/hello:1.0
#
# Every blob is the images' own, byte for byte; see docs/API.md.
{
  # internal/archiveDerivation.nix: name: job: extra: derivation.
  archiveDerivation,
  # Argument checks (internal/checks.nix).
  checks,
  # internal/storeSafeName.nix and internal/outputHash.nix.
  storeSafeName,
  outputHash,
  # The copyTo* apps of the result (internal/copyTo.nix).
  copyTo,
}:
{
  # Repository name, lowercase; every image must have it.
  name,
  # Tag; null gives the hash of the output path, as the image builders do.
  tag ? null,
  # The images, one per platform, in the order the index lists them:
  # results of buildLayeredImage, buildImage, streamLayeredImage (or the
  # WithNixDb and nix-shell forms) or pullImage, each built for its own
  # platform (`architecture`, `variant`, or a library instance for
  # another system).
  images,
}:
let
  fn = "buildImageIndex";
  imageName = checks.name fn name;
  imageTag = checks.tag fn tag;
  list =
    if builtins.isList images && images != [ ] then
      images
    else
      throw "${fn}: images must be a non-empty list of images, one per platform, such as [ helloAmd64 helloArm64 ]";
  count = builtins.length list;
  platformText =
    p: "${p.os}/${p.architecture}" + (if p.variant == null then "" else "/${p.variant}");
  checkImage =
    i: image:
    let
      n = toString (i + 1);
    in
    if !(builtins.isAttrs image && image ? imageName && image ? imagePlatform) then
      throw "${fn}: image ${n} of images is not an image of this library; give results of buildLayeredImage, buildImage, streamLayeredImage or pullImage"
    else if image.imageName != imageName then
      throw "${fn}: image ${n} of images is named \"${image.imageName}\" but the index is \"${imageName}\"; give every image name = \"${imageName}\""
    else
      image;
  checked = builtins.genList (i: checkImage i (builtins.elemAt list i)) count;
  platforms = map (image: platformText image.imagePlatform) checked;
  # Two platforms clash when os and architecture are the same and so is
  # the variant, or one has none (it would match any).
  clash =
    a: b:
    a.os == b.os
    && a.architecture == b.architecture
    && (a.variant == b.variant || a.variant == null || b.variant == null);
  platformOf = i: (builtins.elemAt checked i).imagePlatform;
  # The first image before `i` whose platform clashes with its, or null.
  earlier =
    i:
    let
      same = builtins.filter (j: clash (platformOf j) (platformOf i)) (builtins.genList (j: j) i);
    in
    if same == [ ] then null else builtins.head same;
  unique = builtins.genList (
    i:
    let
      j = earlier i;
    in
    if j == null then
      builtins.elemAt checked i
    else
      let
        a = builtins.elemAt platforms j;
        b = builtins.elemAt platforms i;
        both = if a == b then a else "${a} and ${b} (a platform without a variant matches any)";
      in
      throw "${fn}: images ${toString (j + 1)} and ${toString (i + 1)} are both for ${both}; an index holds one image per platform: build each for its own architecture (architecture = \"arm64\", or a library instance for another system), or drop one"
  ) count;
  result = archiveDerivation "${storeSafeName imageName}-index" (
    {
      job = "image-index";
      name = imageName;
      images = map (image: "${image}") unique;
    }
    // (if imageTag == null then { } else { tag = imageTag; })
  ) { };
in
result
// {
  inherit imageName;
  imageTag = if imageTag != null then imageTag else outputHash result;
  # The platforms of the index, in order ("linux/arm64/v8").
  inherit platforms;
}
# `nix run .#index.copyToRegistry -- docker://...` and the others.
// copyTo result
