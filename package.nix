# The stevedore helper, built with nixpkgs' Rust tooling. The integration
# tests need podman, skopeo and a registry, so only the unit tests run here.
{ lib, rustPlatform }:
rustPlatform.buildRustPackage {
  pname = "stevedore";
  version = (lib.importTOML ./Cargo.toml).package.version;
  src = lib.fileset.toSource {
    root = ./.;
    fileset = lib.fileset.unions [
      ./Cargo.toml
      ./Cargo.lock
      ./src
    ];
  };
  cargoLock.lockFile = ./Cargo.lock;
  cargoTestFlags = [ "--lib" ];
  meta = {
    description = "Reproducible container images from Nix store paths, with no daemon and no VM";
    mainProgram = "stevedore";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
