# buildLayeredImage: the image as a docker-archive in the store, each layer
# compressed with `compressor` ("gz", the default, "zstd" or "none"):
#
#   podman load -i result
#
# Other arguments as streamLayeredImage; see docs/API.md. `fn` is the name
# errors give: buildLayeredImageWithNixDb calls this too.
lib: fn: args:
let
  rest = builtins.removeAttrs args [ "compressor" ];
  stream = lib.layeredImage {
    inherit fn;
    output = "stream";
    drvName = "stream-${lib.baseName args}";
  } rest;
  # Without a tag, the archive takes the stream's (its output hash), so
  # both carry the same tag, as in dockerTools.
  image = lib.layeredImage {
    inherit fn;
    output = "docker-archive";
    compress = lib.checks.compressor fn (args.compressor or "gz");
    drvName = "${lib.baseName args}.tar";
  } (rest // { tag = stream.imageTag; });
in
image
// {
  inherit stream;
  # dockerTools' name for the image description; here the launcher.
  conf = stream;
}
