# buildImage: every store path in one layer, the customisation layer on
# top, as a docker-archive in the store. Arguments as buildLayeredImage
# without maxLayers and layering, and runAsRoot (shell commands run as
# root in a user namespace, chrooted into the image root); fromImage is
# not supported yet. See docs/API.md. `fn` is the name errors give:
# buildImageWithNixDb calls this too.
lib: fn: args:
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
  lib.layeredImage {
    inherit fn runAsRoot;
    output = "docker-archive";
    compress = lib.checks.compressor fn (args.compressor or "gz");
    drvName = "${lib.baseName args}.tar";
    countBase = false;
  } (builtins.removeAttrs args [ "compressor" "runAsRoot" ] // { maxLayers = 2; })
