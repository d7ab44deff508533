# The OCI platform variant of `system`, the default `variant` of images:
# the ARM architecture version, as Go's GOARM names it for 32-bit ARM
# ("v5", "v6", "v7") and the OCI image index lists arm64 ("v8"); null for
# every other CPU, which has no variant.
{
  # The system derivations are built for, such as "armv7l-linux".
  system,
}:
let
  cpu = builtins.head (builtins.split "-" system);
  table = {
    armv5tel = "v5";
    armv6l = "v6";
    armv7l = "v7";
    aarch64 = "v8";
  };
in
table.${cpu} or null
