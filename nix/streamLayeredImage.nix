# streamLayeredImage: an executable that writes a docker-archive of the
# image to stdout, reading every file from the store once:
#
#   ./result | podman load
#   ./result --repo_tag hello:dev | podman load
#
# Arguments as dockerTools.streamLayeredImage; see docs/API.md and the
# argument pattern of nix/internal/layeredImage/default.nix. The result
# has `override`, as dockerTools' has, and `buildArgs`.
{
  # internal/layeredImage: the image behind every builder.
  layeredImage,
  # internal/baseName.nix: the arguments' name, for derivation names.
  baseName,
  # internal/makeOverridable.nix: f: args: f args with `override`.
  makeOverridable,
}:
makeOverridable (
  args:
  layeredImage {
    fn = "streamLayeredImage";
    output = "stream";
    drvName = "stream-${baseName args}";
  } args
  // {
    buildArgs = args;
  }
)
