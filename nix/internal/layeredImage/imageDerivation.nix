# The derivation that writes the image: a launcher (`stream`) that
# writes a docker-archive to stdout, or an archive in the store. The
# helper plans the store layers from the exported closure, leaving out
# the config file and, when it has a base, the paths the base holds.
#
# An archive's explicit layers (`layering` as lists of store paths) are
# derivations of their own, one per list (the `layer` job with `paths`),
# which the image stacks on its base without compressing them again: a
# change to one list's paths builds that layer alone. A stream has no
# blobs to keep, so it lays every layer itself.
{
  # helperDerivation.nix and archiveDerivation.nix.
  helperDerivation,
  archiveDerivation,
}:
{
  # The derivation name.
  name,
  # "stream", "docker-archive" or "oci-archive".
  output,
  # Layer compression of an archive: "gzip", "zstd" or "none"; a stream
  # does not read it.
  compress,
  # false: no store layers.
  includeStorePaths,
  # The customisation tree (customisationLayer.nix or runAsRootLayer.nix).
  customisation,
  # configFile.nix's file: in the closure, not in a layer.
  configFile,
  # The roots of the image's closure, exported to the build.
  closure,
  # The helper's layering (checks.layering with countBase, and maxLayers
  # but for a pipeline).
  layering,
  # The image's name, tag, times, owners, architecture and config.
  image,
  # nixDbTree.nix's tree, or null without includeNixDB.
  nixDb,
  # The job's base: { base = ...; } (checks.fromImage) or { }.
  withBase,
}:
let
  lists =
    if output != "stream" && includeStorePaths && layering.strategy == "explicit" then
      layering.layers
    else
      [ ];
  # One list's layer: named after its first path, so the build log says
  # which one is built; complete in itself, as the archive.
  storeLayer =
    paths:
    let
      first = builtins.unsafeDiscardStringContext (baseNameOf (builtins.head paths));
      pathName = builtins.substring 33 (-1) first;
    in
    archiveDerivation "layer-${pathName}" (
      {
        job = "layer";
        inherit paths compress;
        history = { };
        inherit (image)
          created
          mtime
          uid
          gid
          uname
          gname
          architecture
          ;
      }
    ) { };
  storeLayers = map storeLayer lists;
  stacked =
    if storeLayers == [ ] then
      withBase
    else
      {
        base = (withBase.base or { }) // {
          layers = map (l: "${l}") storeLayers;
        };
      };
in
# An archive is complete in itself and keeps no references; a launcher
# reads the store paths it names, and keeps them.
(if output == "stream" then helperDerivation else archiveDerivation) name (
  {
    job = "image";
    inherit
      output
      compress
      includeStorePaths
      image
      ;
    layering = layering // (if storeLayers == [ ] then { } else { prebuilt = true; });
    graph = "closure";
    customisation = "${customisation}";
    customisationMetadata = "${customisation.metadata}";
    exclude = [ "${configFile}" ];
  }
  // (
    if nixDb == null then
      { }
    else
      {
        nixDb = "${nixDb}";
        nixDbMetadata = "${nixDb.metadata}";
      }
  )
  // stacked
) { exportReferencesGraph.closure = closure; }
