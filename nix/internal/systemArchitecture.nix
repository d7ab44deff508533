# The OCI architecture of `system`, the default `architecture` of images
# and `arch` of pullImage: Nix names CPUs as the kernel does, OCI as Go
# does; a CPU not listed keeps its name.
{
  # The system derivations are built for, such as "x86_64-linux".
  system,
}:
let
  cpu = builtins.head (builtins.split "-" system);
  table = {
    x86_64 = "amd64";
    aarch64 = "arm64";
    i686 = "386";
    armv7l = "arm";
    armv6l = "arm";
    powerpc64le = "ppc64le";
    riscv64 = "riscv64";
    s390x = "s390x";
  };
in
table.${cpu} or cpu
