# buildNixShellImage: streamNixShellImage's image as a docker-archive in
# the store, each layer compressed with `compressor` ("gz", the default,
# "zstd" or "none"), as dockerTools.buildNixShellImage:
#
#   podman load -i result
#
# Other arguments as streamNixShellImage; without a tag the archive has
# the stream's, as buildLayeredImage does. The result has `override`.
{
  # internal/nixShellImage.nix and internal/checks.nix.
  nixShellImage,
  checks,
  # internal/makeOverridable.nix: f: args: f args with `override`.
  makeOverridable,
}:
makeOverridable (
args:
let
  fn = "buildNixShellImage";
  rest = builtins.removeAttrs args [ "compressor" ];
  stream = nixShellImage {
    inherit fn;
    output = "stream";
  } rest;
in
nixShellImage {
  inherit fn;
  output = "docker-archive";
  compress = checks.compressor fn (args.compressor or "gz");
} (rest // { tag = stream.imageTag; })
// {
  inherit stream;
}
)
