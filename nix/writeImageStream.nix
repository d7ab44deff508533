# writeImageStream: the image of a stream launcher (streamLayeredImage's
# or streamNixShellImage's result, overridden or not) as a docker-archive
# in the store, as dockerTools' writeImageStream:
#
#   stevedore.writeImageStream {
#     name = "hello";
#     stream = stevedore.streamLayeredImage { name = "hello"; };
#   }
#
# The helper reads the launcher's image and writes it as buildLayeredImage
# writes its archive, each layer compressed with `compressor`; see
# docs/API.md.
{
  # internal/archiveDerivation.nix: name: job: extra: derivation.
  archiveDerivation,
  # Argument checks (internal/checks.nix).
  checks,
  # internal/storeSafeName.nix: a name without `/` and `:`.
  storeSafeName,
  # The copyTo* apps of the result (internal/copyTo.nix).
  copyTo,
}:
{
  # The result is `<name>.tar` (the base name, as dockerTools').
  name,
  # The launcher: a derivation with imageName and imageTag.
  stream,
  # Layer compression: "gz", "zstd" or "none".
  compressor ? "gz",
  # The result's `meta`.
  meta ? { },
}:
let
  fn = "writeImageStream";
  checkedName =
    if builtins.isString name && name != "" then
      storeSafeName (baseNameOf name)
    else
      throw "${fn}: name must be a non-empty string such as \"hello\"";
  launcher =
    if builtins.isAttrs stream && stream ? outPath && stream ? imageName && stream ? imageTag then
      stream
    else
      throw "${fn}: stream must be a stream launcher, such as streamLayeredImage's or streamNixShellImage's result";
  image = archiveDerivation "${checkedName}.tar" {
    job = "write-stream";
    stream = "${launcher}";
    compress = checks.compressor fn compressor;
  } { };
in
image
// copyTo image
// {
  inherit (launcher) imageName imageTag;
  inherit meta stream;
}
