# exportImage: the file system of an image as one tar, as dockerTools'
# exportImage makes it, but with no VM and no disk image:
#
#   stevedore.exportImage { fromImage = someImage; }
#   podman import result app-flat
#
# The helper reads the image as hostile input (docs/API.md, "Base images:
# what is refused"), applies the whiteouts of its layers and writes every
# path with the mode, owner and mtime its layer gave it. Arguments as
# dockerTools.exportImage; see docs/API.md.
{
  # internal/archiveDerivation.nix: name: job: extra: derivation.
  archiveDerivation,
  # Argument checks (internal/checks.nix).
  checks,
  # internal/storeSafeName.nix: a name without `/` and `:`.
  storeSafeName,
}:
{
  # The image: any image the library makes (mergeImages' included), or a
  # docker-archive (also one compressed as a whole), an OCI layout or an
  # oci-archive.
  fromImage,
  # Of an archive holding several images, the one named so; null: the
  # first (fromImageTag is then not looked at, as in dockerTools).
  fromImageName ? null,
  # With fromImageName, the tag of the image to take; null: the first
  # image of that name, whatever its tag (as dockerTools).
  fromImageTag ? null,
  # The derivation name, as given; by default fromImage's (dockerTools'
  # `fromImage.name`), or `<image>.tar` for a path.
  name ? null,
  # dockerTools' VM settings: accepted, not needed.
  diskSize ? null,
  buildVMMemorySize ? null,
}:
let
  fn = "exportImage";
  # The image's name: its imageName (stevedore and pullImage results),
  # else its derivation or file name without .tar and compression suffixes.
  imageBase =
    let
      raw =
        if builtins.isAttrs fromImage && fromImage ? imageName then
          fromImage.imageName
        else if builtins.isAttrs fromImage && fromImage ? name then
          fromImage.name
        else
          baseNameOf (toString fromImage);
      noStorePrefix = builtins.match "[0-9a-z]{32}-(.*)" raw;
      unprefixed = if noStorePrefix != null then builtins.head noStorePrefix else raw;
      stripped = builtins.match "(.*)\\.tar(\\.gz|\\.zst|\\.zstd)?" unprefixed;
      base = if stripped != null then builtins.head stripped else unprefixed;
    in
    storeSafeName base;
  drvName =
    if name == null then
      (
        if builtins.isAttrs fromImage && fromImage.isExe or false then
          # A launcher (`stream-<name>`, which dockerTools cannot export):
          # its image's name.
          "${imageBase}.tar"
        else if builtins.isAttrs fromImage && fromImage ? name then
          fromImage.name
        else
          "${imageBase}.tar"
      )
    else if builtins.isString name && name != "" then
      storeSafeName name
    else
      throw "${fn}: name must be a non-empty string such as \"rootfs\"";
  fromImageStr =
    if builtins.isAttrs fromImage || builtins.isPath fromImage || builtins.isString fromImage then
      "${fromImage}"
    else
      throw "${fn}: fromImage must be an image (a derivation or a path to an image file)";
in
archiveDerivation drvName {
  job = "export";
  fromImage = fromImageStr;
  fromImageName = checks.optionalString fn "fromImageName" fromImageName;
  # Without fromImageName the job does not look at the tag; "latest"
  # there keeps the derivations made before the default became null.
  fromImageTag =
    if fromImageName == null then "latest" else checks.optionalString fn "fromImageTag" fromImageTag;
} { }
