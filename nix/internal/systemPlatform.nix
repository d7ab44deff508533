# The OCI platform of `system`: `architecture`, the default `architecture`
# of images and `arch` of pullImage (Nix names CPUs as the kernel does,
# OCI as Go's GOARCH does, as nixpkgs' go.GOARCH; a CPU not listed
# keeps its name), and `variant`, the
# default `variant` of images: the ARM architecture version, as Go's GOARM
# names it for 32-bit ARM ("v5", "v6", "v7") and the OCI image index lists
# arm64 ("v8"); null for every other CPU, which has none.
{
  # The system derivations are built for, such as "x86_64-linux".
  system,
}:
let
  cpu = builtins.head (builtins.split "-" system);
  architectures = {
    x86_64 = "amd64";
    aarch64 = "arm64";
    i686 = "386";
    armv5tel = "arm";
    armv7l = "arm";
    armv6l = "arm";
    powerpc64 = "ppc64";
    powerpc64le = "ppc64le";
    loongarch64 = "loong64";
    mipsel = "mipsle";
    mips64el = "mips64le";
    riscv64 = "riscv64";
    s390x = "s390x";
    wasm32 = "wasm";
  };
  variants = {
    armv5tel = "v5";
    armv6l = "v6";
    armv7l = "v7";
    aarch64 = "v8";
  };
in
{
  architecture = architectures.${cpu} or cpu;
  variant = variants.${cpu} or null;
}
