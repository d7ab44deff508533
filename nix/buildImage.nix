# buildImage: every store path in one layer, the customisation layer on
# top, as a docker-archive in the store; on a fromImage base, its layers
# go first and these two on top. Arguments as buildLayeredImage without
# maxLayers and layering, and runAsRoot: shell commands run as root in a
# user namespace, chrooted into the image root, whose changes make the
# customisation layer. See docs/API.md.
{
  # internal/layeredImage: the image behind every builder.
  layeredImage,
  # internal/baseName.nix: the arguments' name, for derivation names.
  baseName,
  # Argument checks (internal/checks.nix).
  checks,
  # The name errors give: buildImageWithNixDb is this function under its
  # own name.
  fn ? "buildImage",
}:
args:
let
  runAsRoot = args.runAsRoot or null;
in
if runAsRoot != null && !builtins.isString runAsRoot then
  throw "${fn}: runAsRoot must be a string of shell commands, or null"
else if runAsRoot != null && (args.fakeRootCommands or "") != "" then
  throw "${fn}: give runAsRoot or fakeRootCommands, not both; put the fakeRootCommands into runAsRoot, where chown and chmod run as root"
else if args ? maxLayers || args ? layering then
  throw "${fn}: maxLayers and layering are not arguments of buildImage; use buildLayeredImage"
else
  layeredImage {
    inherit fn runAsRoot;
    output = "docker-archive";
    compress = checks.compressor fn (args.compressor or "gz");
    drvName = "${baseName args}.tar";
    # Two layers on top of the base, however many it has.
    countBase = false;
  } (builtins.removeAttrs args [ "compressor" "runAsRoot" ] // { maxLayers = 2; })
