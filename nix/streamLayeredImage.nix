# streamLayeredImage: an executable that writes a docker-archive of the
# image to stdout, reading every file from the store once:
#
#   ./result | podman load
#
# Arguments as dockerTools.streamLayeredImage; see docs/API.md and
# nix/internal/layeredImage.nix.
lib: args:
lib.layeredImage {
  fn = "streamLayeredImage";
  output = "stream";
  drvName = "stream-${lib.baseName args}";
} args
