# includeNixDB's tree: a Nix database registering every store path of the
# image's closure (with the base's, when the base has a database) and
# gcroots for `contents`, under /nix/var/nix, which the image job merges
# into the customisation layer. Outputs as customisationLayer.nix.
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
}:
{
  # The image's `<base>` (baseName.nix), for the derivation name.
  baseName,
  # The roots of the image's closure, exported to the build.
  closure,
  # The customisation tree and the config file: in the closure, but not
  # store paths of the image, so not registered.
  customisation,
  configFile,
  # The checked `contents`: a list; each gets a gcroot.
  contents,
  # The checked `created` and `mtime` (null: none given): every
  # registration time is the image's file time, which they give.
  created,
  mtime,
  # The checked owner of /nix/store and /nix/var/nix.
  uid,
  gid,
  # The job's base: { base = ...; } (checks.fromImage) or { }.
  withBase,
}:
helperDerivation "${baseName}-nix-db" (
  {
    job = "nix-db";
    graph = "closure";
    exclude = [
      "${customisation}"
      "${configFile}"
    ];
    gcRoots = map (p: "${p}") contents;
    inherit
      created
      mtime
      uid
      gid
      ;
  }
  // withBase
) {
  outputs = [
    "out"
    "metadata"
  ];
  exportReferencesGraph.closure = closure;
}
