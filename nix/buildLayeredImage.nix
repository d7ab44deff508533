# buildLayeredImage: the image as a docker-archive in the store, each layer
# compressed with `compressor` ("gz", the default, "zstd" or "none"):
#
#   podman load -i result
#
# Other arguments as streamLayeredImage; see docs/API.md.
lib: args:
let
  fn = "buildLayeredImage";
  rest = builtins.removeAttrs args [ "compressor" ];
  image = lib.layeredImage {
    inherit fn;
    output = "docker-archive";
    compress = lib.checks.compressor fn (args.compressor or "gz");
    drvName = "${lib.baseName args}.tar";
  } rest;
  stream = lib.streamLayeredImage rest;
in
image
// {
  inherit stream;
  # dockerTools' name for the image description; here the launcher.
  conf = stream;
}
