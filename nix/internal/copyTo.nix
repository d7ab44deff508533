# The copyToRegistry, copyToPodman and copyToDockerDaemon apps of an image:
# small derivations whose bin/<name> is a `#!stevedore launch` script that
# names the image, so
#
#   nix run .#image.copyToRegistry -- docker://registry.example.com/app:1.0
#   nix run .#image.copyToPodman
#   nix run .#image.copyToDockerDaemon
#
# push it, stream it into `podman load`, or send it to the Docker daemon's
# socket (DOCKER_HOST or /var/run/docker.sock).
lib: image:
let
  launcher =
    name:
    lib.helperDerivation name {
      job = "launcher";
      inherit name;
      action = name;
      image = "${image}";
    } { }
    // {
      meta.mainProgram = name;
    };
in
{
  copyToRegistry = launcher "copy-to-registry";
  copyToPodman = launcher "copy-to-podman";
  copyToDockerDaemon = launcher "copy-to-docker-daemon";
}
