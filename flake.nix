{
  description = "stevedore: reproducible container images from Nix store paths, with no daemon and no VM";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # The helper.
      packages = forAllSystems (pkgs: rec {
        stevedore = pkgs.callPackage ./package.nix { };
        default = stevedore;
      });

      # The library (docs/API.md), with nixpkgs' shell and coreutils:
      #   stevedore.lib.${system}.buildLayeredImage { ... }
      lib = forAllSystems (pkgs: pkgs.callPackage ./default.nix { });

      # Every example image, built with nixpkgs' static busybox.
      checks = forAllSystems (
        pkgs:
        let
          # Everything from the store, so they build in the sandbox.
          examples = import ./examples {
            helper = self.packages.${pkgs.system}.default;
            busybox = pkgs.pkgsStatic.busybox;
            inherit (pkgs) system;
          };
        in
        removeAttrs examples [
          "busybox"
          "app"
          # Not reproducible on purpose.
          "now"
        ]
      );
    };
}
