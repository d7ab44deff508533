# The benchmark closure as stevedore images, for bench/nix_images.py, and
# the stock pipelines as derivations too, so both sides pay what Nix does
# with an output (hashing it, scanning it for references).
{
  helper,
  app,
  compressor ? "gz",
  # The closure of `app`, space-separated, for the stock derivations.
  paths ? "",
}:
let
  stevedore = import ../nix { inherit helper; };
  args = {
    name = "bench";
    tag = "latest";
    contents = [ (builtins.storePath app) ];
    config.Cmd = [ "${builtins.storePath app}/bin/app" ];
  };
  # The host's tar and compressors, outside any sandbox (Debian's Nix).
  stock =
    name: pipeline:
    derivation {
      inherit name;
      system = builtins.currentSystem;
      builder = "/bin/sh";
      args = [
        "-c"
        "tar --hard-dereference -cf - ${paths} 2>/dev/null | ${pipeline} > $out"
      ];
      PATH = "/usr/bin:/bin";
    };
in
{
  stream = stevedore.streamLayeredImage args;
  build = stevedore.buildLayeredImage (args // { inherit compressor; });
  stockZstd = stock "bench-stock.tar.zst" "zstd -q -T2 -3";
  stockGz = stock "bench-stock.tar.gz" "pigz -p2 -n";
}
