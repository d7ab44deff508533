# The copyToRegistry, copyToPodman and copyToDockerDaemon apps of an image:
# small derivations whose bin/<name> is a `#!<helper> launch` script with
# a line of JSON naming the image, and `meta.mainProgram` set, so
#
#   nix run .#image.copyToRegistry -- docker://registry.example.com/app:1.0
#   nix run .#image.copyToPodman
#   nix run .#image.copyToDockerDaemon
#
# push it, stream it into `podman load`, or send it to the Docker daemon's
# socket (DOCKER_HOST or /var/run/docker.sock).
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
}:
image:
let
  launcher =
    name:
    helperDerivation name {
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
