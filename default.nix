# nixpkgs-style entry point:
#
#   stevedore = pkgs.callPackage ./path/to/stevedore { };
#   stevedore.buildLayeredImage { name = "hello"; contents = [ pkgs.hello ]; }
#
# The result is the library (docs/API.md) with the helper as `helper`.
{
  lib,
  callPackage,
  stdenv,
  runtimeShell,
  coreutils,
  findutils,
  gnugrep,
  gnused,
  bashInteractive,
  cacert,
  shadow,
}:
let
  helper = callPackage ./package.nix { };
in
import ./nix {
  inherit helper;
  system = stdenv.hostPlatform.system;
  shell = runtimeShell;
  inherit
    bashInteractive
    coreutils
    cacert
    shadow
    ;
  scriptPath = lib.makeBinPath [
    coreutils
    findutils
    gnugrep
    gnused
  ];
}
// {
  inherit helper;
}
