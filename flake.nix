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

      # The library (docs/API.md), with nixpkgs' shell, coreutils and fakeroot:
      #   stevedore.lib.${system}.buildLayeredImage { ... }
      lib = forAllSystems (pkgs: pkgs.callPackage ./default.nix { });

      # Every example image, built with nixpkgs' static busybox.
      checks = forAllSystems (
        pkgs:
        let
          examples = import ./examples {
            helper = self.packages.${pkgs.system}.default;
            shell = pkgs.runtimeShell;
            scriptPath = pkgs.lib.makeBinPath [ pkgs.coreutils ];
            busyboxBinary = "${pkgs.pkgsStatic.busybox}/bin/busybox";
            fakeroot = "${pkgs.fakeroot}/bin/fakeroot";
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
