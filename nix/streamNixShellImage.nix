# streamNixShellImage: an executable that writes a docker-archive of an
# image whose shell has the build environment of `drv`, as `nix-shell`
# gives it, to stdout (`./result | podman load`), as
# dockerTools.streamNixShellImage:
#
#   stevedore.streamNixShellImage { drv = pkgs.hello; run = "buildDerivation"; }
#
# See docs/API.md and internal/nixShellImage.nix. The result has
# `override`, as dockerTools' (a streamLayeredImage result) has.
{
  # internal/nixShellImage.nix: the image behind both nix-shell builders.
  nixShellImage,
  # internal/makeOverridable.nix: f: args: f args with `override`.
  makeOverridable,
}:
makeOverridable (nixShellImage {
  fn = "streamNixShellImage";
  output = "stream";
})
