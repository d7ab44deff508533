# The stevedore library: container images from Nix store paths, with
# nixpkgs dockerTools' function names and arguments.
#
#   stevedore = import ./nix { helper = ./target/release/stevedore; };
#   stevedore.buildLayeredImage { name = "hello"; contents = [ hello ]; }
#
# Needs no nixpkgs: every derivation is a plain `derivation` whose builder
# is the stevedore helper. flake.nix passes nixpkgs' shell and coreutils.
{
  # The stevedore helper: a derivation with bin/stevedore, or a path to a
  # prebuilt binary (copied into the store).
  helper,
  # The system derivations are built for.
  system ? builtins.currentSystem,
  # The shell that runs extraCommands and fakeRootCommands.
  shell ? "/bin/sh",
  # PATH for those commands.
  scriptPath ? "/usr/bin:/bin",
  # No longer used: fakeRootCommands run as root in a user namespace of
  # the helper's own. Accepted with a warning.
  fakeroot ? null,
}:
let
  internal = import ./internal {
    inherit
      helper
      system
      shell
      scriptPath
      ;
  };
  warnFakeroot =
    if fakeroot == null then
      x: x
    else
      builtins.trace "stevedore: warning: the fakeroot argument is no longer used (fakeRootCommands run in a user namespace of the helper's own); leave it out";
  lib = internal // {
    inherit streamLayeredImage;
    layeredImage = import ./internal/layeredImage.nix lib;
    # copyToRegistry, copyToPodman, copyToDockerDaemon of an image.
    copyTo = import ./internal/copyTo.nix lib;
    # The two builders under the name their errors give.
    buildLayeredImageAs = import ./buildLayeredImage.nix lib;
    buildImageAs = import ./buildImage.nix lib;
  };
  streamLayeredImage = import ./streamLayeredImage.nix lib;
  buildLayeredImage = lib.buildLayeredImageAs "buildLayeredImage";
  buildImage = lib.buildImageAs "buildImage";
  buildLayeredImageWithNixDb = import ./buildLayeredImageWithNixDb.nix lib;
  buildImageWithNixDb = import ./buildImageWithNixDb.nix lib;
  pullImage = import ./pullImage.nix lib;
  exportImage = import ./exportImage.nix lib;
  mergeImages = import ./mergeImages.nix lib;
in
warnFakeroot {
  inherit
    streamLayeredImage
    buildLayeredImage
    buildImage
    buildLayeredImageWithNixDb
    buildImageWithNixDb
    pullImage
    exportImage
    mergeImages
    ;
}
