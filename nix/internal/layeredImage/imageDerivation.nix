# The derivation that writes the image: a launcher (`stream`) that
# writes a docker-archive to stdout, or an archive in the store. The
# helper plans the store layers from the exported closure, leaving out
# the config file and, when it has a base, the paths the base holds.
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
# An archive is complete in itself and keeps no references; a launcher
# reads the store paths it names, and keeps them.
(if output == "stream" then helperDerivation else archiveDerivation) name (
  {
    job = "image";
    inherit
      output
      compress
      includeStorePaths
      layering
      image
      ;
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
  // withBase
) { exportReferencesGraph.closure = closure; }
