# The benchmark closure as stevedore images, for bench/nix_images.py.
{
  helper,
  app,
  compressor ? "gz",
}:
let
  stevedore = import ../nix { inherit helper; };
  args = {
    name = "bench";
    tag = "latest";
    contents = [ (builtins.storePath app) ];
    config.Cmd = [ "${builtins.storePath app}/bin/app" ];
  };
in
{
  stream = stevedore.streamLayeredImage args;
  build = stevedore.buildLayeredImage (args // { inherit compressor; });
}
