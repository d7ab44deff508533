# buildImage: every store path in one layer, the customisation layer on
# top, as a docker-archive in the store; on a fromImage base, its layers
# go first and these two on top. Arguments as buildLayeredImage without
# maxLayers and layering, and runAsRoot: shell commands run as root in a
# user namespace, chrooted into the image root, whose changes make the
# customisation layer; keepContentsDirlinks; and dockerTools' VM sizes
# (diskSize, buildVMMemorySize), accepted with no effect. The result has
# `override`, `buildArgs` and `layer`, as dockerTools'. See docs/API.md.
{
  # internal/layeredImage: the image behind every builder.
  layeredImage,
  # internal/baseName.nix: the arguments' name, for derivation names.
  baseName,
  # Argument checks (internal/checks.nix).
  checks,
  # internal/warn.nix and internal/makeOverridable.nix.
  warn,
  makeOverridable,
  # The name errors give: buildImageWithNixDb is this function under its
  # own name.
  fn ? "buildImage",
}:
makeOverridable (
  args:
  let
    runAsRoot = args.runAsRoot or null;
    contents = args.contents or null;
    # No VM here: checked as dockerTools' would be, then unused.
    vmSize =
      arg:
      let
        v = args.${arg} or 1;
      in
      if builtins.isInt v && v > 0 then
        true
      else
        throw "${fn}: ${arg} ${builtins.toJSON v} must be a positive integer (megabytes); it has no effect here, as no VM is used: leave it out";
    # dockerTools deprecates `contents` for buildImage; it still works.
    warnContents =
      if contents != null && (args.copyToRoot or null) == null then
        warn "${fn}: in image \"${args.name or ""}\", contents is deprecated; use copyToRoot for the paths copied into the root (such as copyToRoot = buildEnv { ... } to put packages into /bin)"
      else
        x: x;
    rest =
      builtins.removeAttrs args [
        "compressor"
        "runAsRoot"
        "keepContentsDirlinks"
        "diskSize"
        "buildVMMemorySize"
      ]
      // (if args ? contents && contents == null then { contents = [ ]; } else { });
  in
  if runAsRoot != null && !builtins.isString runAsRoot then
    throw "${fn}: runAsRoot must be a string of shell commands, or null"
  else if runAsRoot != null && (args.fakeRootCommands or "") != "" then
    throw "${fn}: give runAsRoot or fakeRootCommands, not both; put the fakeRootCommands into runAsRoot, where chown and chmod run as root"
  else if args ? maxLayers || args ? layering || args ? layeringPipeline || args ? debug then
    throw "${fn}: maxLayers, layering, layeringPipeline and debug are not arguments of buildImage; use buildLayeredImage"
  else if args ? enableFakechroot then
    throw "${fn}: enableFakechroot is not an argument of buildImage; use runAsRoot, which runs chrooted into the image root"
  else
    assert vmSize "diskSize" && vmSize "buildVMMemorySize";
    warnContents (
      layeredImage {
        inherit fn runAsRoot;
        output = "docker-archive";
        compress = checks.compressor fn (args.compressor or "gz");
        drvName = "${baseName args}.tar";
        # Two layers on top of the base, however many it has.
        countBase = false;
        keepContentsDirlinks = checks.bool fn "keepContentsDirlinks" (args.keepContentsDirlinks or false);
      } (rest // { maxLayers = 2; })
      // {
        buildArgs = args;
      }
    )
)
