# buildLayeredImage: the image as a docker-archive in the store, each layer
# compressed with `compressor` ("gz", the default, "zstd" or "none"):
#
#   podman load -i result
#
# Other arguments as streamLayeredImage; see docs/API.md. The result's
# `stream` (and dockerTools' `conf`) is the same image from
# streamLayeredImage, whose tag it shares; `override` and `buildArgs` as
# streamLayeredImage's.
{
  # internal/layeredImage: the image behind every builder.
  layeredImage,
  # internal/baseName.nix: the arguments' name, for derivation names.
  baseName,
  # Argument checks (internal/checks.nix).
  checks,
  # internal/makeOverridable.nix: f: args: f args with `override`.
  makeOverridable,
  # The name errors give: buildLayeredImageWithNixDb is this function
  # under its own name.
  fn ? "buildLayeredImage",
}:
makeOverridable (
args:
let
  rest = builtins.removeAttrs args [ "compressor" ];
  stream = layeredImage {
    inherit fn;
    output = "stream";
    drvName = "stream-${baseName args}";
  } rest;
  # Without a tag, the archive takes the stream's (its output hash), so
  # both carry the same tag, as in dockerTools; and the stream's checked
  # name, so an uppercase one warns once.
  image = layeredImage {
    inherit fn;
    output = "docker-archive";
    compress = checks.compressor fn (args.compressor or "gz");
    drvName = "${baseName args}.tar";
  } (rest // { tag = stream.imageTag; name = stream.imageName; });
in
image
// {
  inherit stream;
  # dockerTools' name for the image description; here the launcher.
  conf = stream;
  buildArgs = args;
}
)
