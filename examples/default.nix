# Example images, built with nothing but this repository, Nix and a static
# busybox (no nixpkgs):
#
#   nix-build examples -A hello --arg helper ./target/release/stevedore
#   ./result | podman load
#
# Without `busybox`, the example store paths are built by the host's
# /bin/sh from the host's busybox-static, which needs `sandbox = false`
# (Debian's Nix default). With `busybox` (a directory holding
# bin/busybox and its applets as links, such as nixpkgs'
# pkgsStatic.busybox), everything comes from the store, and the examples
# build in the Nix sandbox; scripts/sandbox-nix.sh does so.
{
  # The stevedore helper (a derivation or a path to the binary). In the
  # Nix sandbox it must be a static binary (scripts/build-static-helper.sh)
  # or the flake's package.
  helper,
  # A busybox directory with bin/busybox and applet links: a derivation
  # or a path (copied into the store). null: made from busyboxBinary.
  busybox ? null,
  # A static busybox binary, when `busybox` is null: a path (copied into
  # the store) or a string with store context.
  busyboxBinary ? /bin/busybox,
  # The shell and PATH that build the example store paths and run the
  # images' extraCommands and fakeRootCommands.
  # null: /bin/sh and /usr/bin:/bin without `busybox`, its sh and bin
  # with it.
  shell ? null,
  scriptPath ? null,
  system ? builtins.currentSystem,
}@args:
let
  # The `busybox` argument (the name is the example's below).
  busyboxTree =
    if args.busybox or null == null then
      null
    else if builtins.isPath args.busybox then
      builtins.path {
        path = args.busybox;
        name = "busybox";
      }
    else
      args.busybox;
  scriptShell =
    if shell != null then
      shell
    else if busyboxTree == null then
      "/bin/sh"
    else
      "${busyboxTree}/bin/sh";
  scriptDirs =
    if scriptPath != null then
      scriptPath
    else if busyboxTree == null then
      "/usr/bin:/bin"
    else
      "${busyboxTree}/bin";
  stevedore = import ../nix {
    inherit helper system;
    shell = scriptShell;
    scriptPath = scriptDirs;
  };
  sh =
    name: script: extra:
    derivation (
      {
        inherit name system;
        builder = scriptShell;
        args = [
          "-c"
          script
        ];
        PATH = scriptDirs;
      }
      // extra
    );

  busyboxBin =
    if builtins.isPath busyboxBinary then
      builtins.path {
        path = busyboxBinary;
        name = "busybox-static-binary";
      }
    else
      busyboxBinary;
  # busybox with the applets the examples use as symlinks in bin/.
  # With `busybox` given, a copy of it: a derivation either way.
  busyboxBuilt =
    if busyboxTree != null then
      sh "busybox" "mkdir $out && cp -a ${busyboxTree}/bin $out/" { }
    else
      sh "busybox" ''
        set -e
        mkdir -p $out/bin
        cp ${busyboxBin} $out/bin/busybox
        chmod 555 $out/bin/busybox
        for a in sh echo cat ls id stat env pwd test wc head chown mkdir rm sleep; do ln -s busybox $out/bin/$a; done
      '' { };

  # 30 store paths, each with a file and a reference to the one before.
  chain = builtins.foldl' (
    acc: i:
    acc
    ++ [
      (sh "dep-${toString i}" ''
        mkdir -p $out/share
        echo "dep ${toString i} after ${if acc == [ ] then "none" else builtins.elemAt acc (builtins.length acc - 1)}" > $out/share/dep-${toString i}
      '' { })
    ]
  ) [ ] (builtins.genList (i: i + 1) 29);
  app = sh "app" ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\necho app sees ${builtins.concatStringsSep " " chain} | ${busybox}/bin/wc -w\n' > $out/bin/app
    chmod 555 $out/bin/app
  '' { };
  # A path that refers to a derivation file: its closure holds .drv files,
  # whose outputs a Nix database records.
  # A store path the base examples do not have.
  greeter = sh "greeter" ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\necho "$GREETING from $(${busybox}/bin/cat /etc/layer-note)"\n' > $out/bin/greet
    chmod 555 $out/bin/greet
  '' { };
  drvRef = sh "drv-ref" ''
    mkdir -p $out/share
    echo ${builtins.unsafeDiscardOutputDependency app.drvPath} > $out/share/app-drv
  '' { };
  busybox = busyboxBuilt;
in
rec {
  inherit busybox app drvRef greeter;

  # A busybox image that says hello.
  hello = stevedore.streamLayeredImage {
    name = "stevedore-example-hello";
    tag = "latest";
    contents = [ busybox ];
    config.Cmd = [
      "/bin/sh"
      "-c"
      "echo hello from stevedore"
    ];
  };

  # About 30 store paths in 4 layers: 3 store layers and the customisation
  # layer, with nothing lost from the last store layer (nixpkgs issue
  # 78744). Popularity fills the layer budget exactly.
  layered = stevedore.buildLayeredImage {
    name = "stevedore-example-layered";
    tag = "latest";
    contents = [
      busybox
      app
    ];
    maxLayers = 4;
    layering = "popularity";
    config.Cmd = [ "${app}/bin/app" ];
  };

  # The smallest layer budget: one store layer and the customisation layer.
  twoLayers = stevedore.buildLayeredImage {
    name = "stevedore-example-two-layers";
    tag = "latest";
    contents = [
      busybox
      app
    ];
    maxLayers = 2;
    compressor = "zstd";
    config.Cmd = [ "${app}/bin/app" ];
  };

  # Store files owned by uid 1000, run as that user.
  nonRoot = stevedore.buildLayeredImage {
    name = "stevedore-example-non-root";
    tag = "latest";
    contents = [ busybox ];
    uid = 1000;
    gid = 1000;
    uname = "app";
    gname = "app";
    config = {
      User = "1000:1000";
      Cmd = [
        "/bin/sh"
        "-c"
        "id -u; stat -c %u ${busybox}/bin/busybox"
      ];
    };
  };

  # fakeRootCommands: a chown that reaches the layer.
  fakeRoot = stevedore.buildLayeredImage {
    name = "stevedore-example-fake-root";
    tag = "latest";
    contents = [ busybox ];
    fakeRootCommands = ''
      mkdir -p ./data
      chown 1000:1000 ./data
    '';
    config.Cmd = [
      "/bin/sh"
      "-c"
      "stat -c %u:%g /data"
    ];
  };

  # No store paths at all: only a config and a customisation layer.
  configOnly = stevedore.buildLayeredImage {
    name = "stevedore-example-config-only";
    tag = "latest";
    config = {
      Env = [ "ONLY=config" ];
      Labels."org.example.kind" = "config-only";
    };
  };

  # Env and the other config fields, as podman inspect shows them.
  config = stevedore.buildLayeredImage {
    name = "stevedore-example-config";
    tag = "latest";
    contents = [ busybox ];
    extraCommands = ''
      mkdir -p srv/app
      echo 'from extraCommands: ''${not interpolated}' > srv/app/greeting
    '';
    config = {
      Env = [
        "GREETING=hello world"
        "PATH=/bin"
      ];
      Entrypoint = [
        "/bin/sh"
        "-c"
      ];
      Cmd = [ "echo $GREETING; pwd; cat greeting" ];
      WorkingDir = "/srv/app";
      ExposedPorts."8080/tcp" = { };
      Volumes."/data" = { };
      Labels."org.example.name" = "config";
      StopSignal = "SIGINT";
    };
  };

  # created = "now": not reproducible, on purpose.
  now = stevedore.buildLayeredImage {
    name = "stevedore-example-now";
    tag = "latest";
    contents = [ busybox ];
    created = "now";
  };

  # No tag: the tag is the hash of the output path.
  untagged = stevedore.buildLayeredImage {
    name = "stevedore-example-untagged";
    contents = [ busybox ];
    config.Cmd = [
      "/bin/sh"
      "-c"
      "echo untagged"
    ];
  };

  # A Nix database of the store paths and gcroots for the contents.
  # `nixDb.stream` is the same image from streamLayeredImage.
  nixDb = stevedore.buildLayeredImage {
    name = "stevedore-example-nix-db";
    tag = "latest";
    contents = [
      busybox
      app
    ];
    maxLayers = 4;
    includeNixDB = true;
    config.Cmd = [ "${app}/bin/app" ];
  };

  # The dockerTools alias; derivation files in the closure. Nix exports
  # the outputs of those derivations with it, so they are in contents
  # too: a build sees only its inputs.
  nixDbDrv = stevedore.buildLayeredImageWithNixDb {
    name = "stevedore-example-nix-db-drv";
    tag = "latest";
    contents = [
      busybox
      app
      drvRef
    ];
  };

  # One store layer; the store and /nix/var/nix owned by 1000:1000 for a
  # Nix that runs as that user. `app` is reached only through the config,
  # so it is registered but has no gcroot.
  nixDbNonRoot = stevedore.buildImageWithNixDb {
    name = "stevedore-example-nix-db-non-root";
    tag = "latest";
    contents = [ busybox ];
    uid = 1000;
    gid = 1000;
    uname = "nix";
    gname = "nix";
    nixUid = 1000;
    nixGid = 1000;
    config = {
      User = "1000:1000";
      Cmd = [ "${app}/bin/app" ];
    };
  };

  # `layered` as the base of another layered image: its four layers come
  # first, unchanged, and count towards maxLayers; busybox and app, which
  # the base has, are not written again.
  onBase = stevedore.buildLayeredImage {
    name = "stevedore-example-on-base";
    tag = "latest";
    fromImage = layered;
    contents = [
      busybox
      greeter
    ];
    maxLayers = 7;
    extraCommands = "mkdir -p etc && echo the layer on top > etc/layer-note";
    config = {
      Cmd = [ "${greeter}/bin/greet" ];
      Env = [ "GREETING=hello" ];
    };
  };

  # The same as a launcher on a launcher base (streamed, not stored).
  onBaseStream = stevedore.streamLayeredImage {
    name = "stevedore-example-on-base-stream";
    tag = "latest";
    fromImage = hello;
    contents = [ greeter ];
    extraCommands = "mkdir -p etc && echo a streamed layer > etc/layer-note";
    config = {
      Cmd = [ "${greeter}/bin/greet" ];
      Env = [ "GREETING=hi" ];
    };
  };

  # buildImage on a base: the base's layers, then one store layer and the
  # customisation layer.
  imageOnBase = stevedore.buildImage {
    name = "stevedore-example-image-on-base";
    tag = "latest";
    fromImage = twoLayers;
    copyToRoot = [ greeter ];
    extraCommands = "mkdir -p etc && echo buildImage > etc/layer-note";
    config.Cmd = [ "${greeter}/bin/greet" ];
    config.Env = [ "GREETING=hey" ];
  };

  # A Nix database on top of a base's: both images have one, and the top
  # one registers the base's paths (busybox, app and their closure) and
  # its own (greeter).
  nixDbOnBase = stevedore.buildLayeredImage {
    name = "stevedore-example-nix-db-on-base";
    tag = "latest";
    fromImage = nixDb;
    contents = [ greeter ];
    maxLayers = 7;
    includeNixDB = true;
    config.Cmd = [ "${greeter}/bin/greet" ];
  };

  # The base of `runAsRoot`: busybox, a user database, and files that
  # runAsRoot changes and deletes.
  runAsRootBase = stevedore.buildLayeredImage {
    name = "stevedore-example-run-as-root-base";
    tag = "latest";
    contents = [ busybox ];
    maxLayers = 2;
    extraCommands = ''
      mkdir -p etc srv
      echo 'root:x:0:0:root:/root:/bin/sh' > etc/passwd
      echo 'root:x:0:' > etc/group
      echo obsolete > srv/obsolete
      echo kept > srv/kept
    '';
  };

  # runAsRoot: a user and a directory it owns, made as root in a user
  # namespace (no VM); a file of the base and one of contents deleted
  # (whiteouts in the layer); then extraCommands in the layer, as in
  # dockerTools.
  runAsRoot = stevedore.buildImage {
    name = "stevedore-example-run-as-root";
    tag = "latest";
    fromImage = runAsRootBase;
    contents = [ busybox ];
    runAsRoot = ''
      [ -e /etc/passwd ] || echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd
      [ -e /etc/group ] || echo 'root:x:0:' > /etc/group
      echo 'alice:x:1000:1000:Alice:/home/alice:/bin/sh' >> /etc/passwd
      echo 'alice:x:1000:' >> /etc/group
      mkdir -p /home/alice /data
      chown alice:alice /home/alice /data
      rm /srv/obsolete /bin/wc
    '';
    extraCommands = ''
      mkdir -p srv
      echo made by extraCommands > srv/extra
    '';
    config.Cmd = [ "/bin/sh" ];
  };
}
