# The benchmark closure's app with one file changed (`change`), as four
# kinds of image, for bench/rebuild.py: what a rebuild after a one-file
# change to the app costs each.
{
  helper,
  app,
  # Text appended to one file of the app: a new value is a new app.
  change,
  # A JSON file listing the store paths of the app's closure but the app.
  deps,
}:
let
  stevedore = import ../nix { inherit helper; };
  base = builtins.storePath app;
  # The app again, with one file changed; the rest of the closure is the
  # same store paths.
  changed = derivation {
    name = "app";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [
      "-c"
      "cp -r ${base} $out && chmod -R u+w $out && echo '# ${change}' >> $out/bin/app"
    ];
    PATH = "/usr/bin:/bin";
  };
  args = {
    name = "bench";
    tag = "latest";
    contents = [ changed ];
    config.Cmd = [ "${changed}/bin/app" ];
  };
in
{
  # dockerTools style: every layer in the image derivation.
  layered = stevedore.buildLayeredImage args;
  # dockerTools style with explicit lists: the unchanged closure in one
  # list, the changed app in another, each a layer derivation of its own.
  lists = stevedore.buildLayeredImage (
    args
    // {
      layering = [
        (map builtins.storePath (builtins.fromJSON (builtins.readFile deps)))
        [ changed ]
      ];
    }
  );
  # A launcher: layers are made (and cached) when pushed.
  stream = stevedore.streamLayeredImage args;
  # nix2container style: the closure of the unchanged app in a layer
  # derivation of its own, the changed app in the top one.
  explicit = stevedore.nix2container.buildImage {
    name = "bench";
    tag = "latest";
    layers = [ (stevedore.nix2container.buildLayer { deps = [ base ]; }) ];
    copyToRoot = [ changed ];
    config.Cmd = [ "${changed}/bin/app" ];
  };
}
