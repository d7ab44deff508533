# The stevedore library: container images from Nix store paths, with
# nixpkgs dockerTools' function names and arguments.
#
#   stevedore = import ./nix { helper = ./target/release/stevedore; };
#   stevedore.buildLayeredImage { name = "hello"; contents = [ hello ]; }
#
# Needs no nixpkgs: every derivation is a plain `derivation` whose builder
# is the stevedore helper. default.nix (and so flake.nix) passes nixpkgs'
# shell, tools and the packages some functions put into images.
# This file only wires the scope (internal/scope.nix): each file below is
# a function of the names it uses, filled from the scope.
{
  # The stevedore helper: a derivation with bin/stevedore, or a path to a
  # prebuilt binary (copied into the store).
  helper,
  # The system derivations are built for.
  system ? builtins.currentSystem,
  # The shell that runs extraCommands, fakeRootCommands and runAsRoot.
  shell ? "/bin/sh",
  # PATH for extraCommands and fakeRootCommands.
  scriptPath ? "/usr/bin:/bin",
  # Packages that some functions put into images or run: binSh and the
  # nix-shell images take bashInteractive, usrBinEnv and runAsRoot
  # coreutils, caCertificates cacert, shadowSetup shadow. null: a function
  # that needs one fails at evaluation naming it. default.nix (and so the
  # flake) fills them from nixpkgs.
  bashInteractive ? null,
  coreutils ? null,
  cacert ? null,
  shadow ? null,
  # No longer used: fakeRootCommands run as root in a user namespace of
  # the helper's own. Accepted with a warning.
  fakeroot ? null,
}:
let
  scope = import ./internal/scope.nix (
    self:
    let
      inherit (self) callPackage;
    in
    {
      inherit
        helper
        system
        shell
        scriptPath
        bashInteractive
        coreutils
        cacert
        shadow
        ;

      # Private: the helper and the derivations it builds.
      helperBin = callPackage ./internal/helperBin.nix { };
      helperDerivation = callPackage ./internal/helperDerivation.nix { };
      archiveDerivation = callPackage ./internal/archiveDerivation.nix { };
      textFile = callPackage ./internal/textFile.nix { };
      copyTo = callPackage ./internal/copyTo.nix { };
      storeTree = callPackage ./internal/storeTree.nix { };

      # Private: argument checks and small helpers.
      checks = callPackage ./internal/checks.nix { };
      hasRegistryHost = callPackage ./internal/hasRegistryHost.nix { };
      storeSafeName = callPackage ./internal/storeSafeName.nix { };
      baseName = callPackage ./internal/baseName.nix { };
      storePathOf = callPackage ./internal/storePathOf.nix { };
      outputHash = callPackage ./internal/outputHash.nix { };
      systemArchitecture = (callPackage ./internal/systemPlatform.nix { }).architecture;
      systemVariant = (callPackage ./internal/systemPlatform.nix { }).variant;
      warn = callPackage ./internal/warn.nix { };
      makeOverridable = callPackage ./internal/makeOverridable.nix { };
      toolPaths = callPackage ./internal/toolPaths.nix { };
      libraryPackage = callPackage ./internal/libraryPackage.nix { };
      copyToRootList = callPackage ./internal/copyToRootList.nix { };

      # Private: the layered image and the derivations it is made of.
      layeredImage = callPackage ./internal/layeredImage { };
      customisationLayer = callPackage ./internal/layeredImage/customisationLayer.nix { };
      runAsRootLayer = callPackage ./internal/layeredImage/runAsRootLayer.nix { };
      configFile = callPackage ./internal/layeredImage/configFile.nix { };
      nixDbTree = callPackage ./internal/layeredImage/nixDbTree.nix { };
      imageDerivation = callPackage ./internal/layeredImage/imageDerivation.nix { };
      imageSbom = callPackage ./internal/layeredImage/sbom.nix { };

      # Private: the image behind the nix-shell builders.
      nixShellImage = callPackage ./internal/nixShellImage.nix { };

      # Public.
      streamLayeredImage = callPackage ./streamLayeredImage.nix { };
      buildLayeredImage = callPackage ./buildLayeredImage.nix { };
      buildImage = callPackage ./buildImage.nix { };
      # The builders they extend, under the name their errors give.
      buildLayeredImageWithNixDb = callPackage ./buildLayeredImageWithNixDb.nix {
        buildLayeredImage = callPackage ./buildLayeredImage.nix {
          fn = "buildLayeredImageWithNixDb";
        };
      };
      buildImageWithNixDb = callPackage ./buildImageWithNixDb.nix {
        buildImage = callPackage ./buildImage.nix { fn = "buildImageWithNixDb"; };
      };
      pullImage = callPackage ./pullImage.nix { };
      exportImage = callPackage ./exportImage.nix { };
      mergeImages = callPackage ./mergeImages.nix { };
      buildImageIndex = callPackage ./buildImageIndex.nix { };
      binSh = callPackage ./binSh.nix { };
      usrBinEnv = callPackage ./usrBinEnv.nix { };
      caCertificates = callPackage ./caCertificates.nix { };
      fakeNss = callPackage ./fakeNss.nix { };
      shadowSetup = callPackage ./shadowSetup.nix { };
      streamNixShellImage = callPackage ./streamNixShellImage.nix { };
      buildNixShellImage = callPackage ./buildNixShellImage.nix { };
      writeImageStream = callPackage ./writeImageStream.nix { };
      shellScript = callPackage ./shellScript.nix { };
      # nix2container's API, under its own name.
      nix2container = {
        buildImage = callPackage ./nix2container/buildImage.nix { };
        buildLayer = callPackage ./nix2container/buildLayer.nix { };
        pullImage = callPackage ./nix2container/pullImage.nix { };
        pullImageFromManifest = callPackage ./nix2container/pullImageFromManifest.nix { };
      };
    }
  );
  warnFakeroot =
    if fakeroot == null then
      x: x
    else
      builtins.trace "stevedore: warning: the fakeroot argument is no longer used (fakeRootCommands run in a user namespace of the helper's own); leave it out";
in
warnFakeroot {
  inherit (scope)
    streamLayeredImage
    buildLayeredImage
    buildImage
    buildLayeredImageWithNixDb
    buildImageWithNixDb
    pullImage
    exportImage
    mergeImages
    buildImageIndex
    binSh
    usrBinEnv
    caCertificates
    fakeNss
    shadowSetup
    streamNixShellImage
    buildNixShellImage
    writeImageStream
    shellScript
    nix2container
    ;
}
