# buildImage: every store path in one layer, the customisation layer on
# top, as a docker-archive in the store. Arguments as buildLayeredImage
# without maxLayers and layering; runAsRoot and fromImage are not
# supported yet. See docs/API.md. `fn` is the name errors give:
# buildImageWithNixDb calls this too.
lib: fn: args:
if args ? runAsRoot && args.runAsRoot != null then
  throw "${fn}: runAsRoot is not supported yet; use fakeRootCommands for chown and chmod"
else if args ? maxLayers || args ? layering then
  throw "${fn}: maxLayers and layering are not arguments of buildImage; use buildLayeredImage"
else
  lib.layeredImage {
    inherit fn;
    output = "docker-archive";
    compress = lib.checks.compressor fn (args.compressor or "gz");
    drvName = "${lib.baseName args}.tar";
    countBase = false;
  } (builtins.removeAttrs args [ "compressor" "runAsRoot" ] // { maxLayers = 2; })
