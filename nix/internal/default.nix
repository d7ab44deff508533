# Private helpers of the library: the helper binary, argument checks, and
# the derivations every public function is made of.
{
  helper,
  system,
  shell,
  scriptPath,
}:
let
  # The helper as a store path of the binary itself.
  helperBin =
    if builtins.isAttrs helper && helper ? outPath then
      "${helper}/bin/stevedore"
    else if builtins.isPath helper || builtins.isString helper then
      builtins.path {
        path = if builtins.isString helper then /. + helper else helper;
        name = "stevedore";
      }
    else
      throw "stevedore: helper must be the stevedore derivation or a path to the stevedore binary";

  # A derivation built by the helper; `job` is its `stevedore` attribute.
  helperDerivation =
    name: job: extra:
    derivation (
      {
        inherit name system;
        builder = helperBin;
        args = [ "nix-builder" ];
        __structuredAttrs = true;
        stevedore = job // {
          version = 1;
        };
      }
      // extra
    );

  # A derivation whose output is an image archive or layout: complete in
  # itself, so it keeps no references to the store paths its config and
  # history name, and `nix copy` of an image copies the image alone (as
  # dockerTools' tarball). Nix 2.16 and later honour it; older Nix
  # ignores it, and the archive then refers to the image's closure.
  archiveDerivation =
    name: job: extra:
    helperDerivation name job (extra // { unsafeDiscardReferences.out = true; });

  # The store path a string such as "${bash}/bin/bash" lies in, keeping
  # the string's context (substring does, match does not); null for a
  # string outside the store. exportReferencesGraph takes store paths
  # only, on Nix 2.8 not a path inside one.
  storePathOf =
    s:
    let
      m = builtins.match "(${builtins.storeDir}/[^/]+)(/.*)?" (builtins.unsafeDiscardStringContext s);
    in
    if m == null then null else builtins.substring 0 (builtins.stringLength (builtins.head m)) s;

  checks = import ./checks.nix;

  # The image name as it goes into derivation names.
  baseName =
    args:
    let
      name = args.name or (throw "stevedore: the argument `name` is required, e.g. name = \"hello\"");
    in
    if builtins.isString name then
      builtins.replaceStrings [ "/" ":" ] [ "-" "-" ] name
    else
      throw "stevedore: name must be a string such as \"hello\"";

  # The hash part of a store path: dockerTools' tag when none is given.
  outputHash = drv: builtins.substring 0 32 (baseNameOf (builtins.unsafeDiscardStringContext drv.outPath));

  # OCI architecture names for Nix systems.
  architectureOf =
    sys:
    let
      cpu = builtins.head (builtins.split "-" sys);
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
    table.${cpu} or cpu;
in
{
  inherit
    helperBin
    helperDerivation
    archiveDerivation
    storePathOf
    checks
    baseName
    outputHash
    architectureOf
    system
    shell
    scriptPath
    ;
}
