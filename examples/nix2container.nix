# nix2container's examples (github.com/nlewo/nix2container, examples/),
# built with stevedore.nix2container and this repository's stand-ins for
# nixpkgs' packages: busybox, and small derivations made with it.
#
#   nix-build examples/nix2container.nix -A perms --arg helper ./target/release/stevedore
#   ./result | podman load
#
# Arguments as examples/default.nix's.
{
  helper,
  system ? builtins.currentSystem,
  # Changes the application of `rebuild`, so a test can build it twice.
  appVersion ? "1",
  ...
}@args:
let
  ex = import ./. (builtins.removeAttrs args [ "appVersion" ]);
  inherit (ex) busybox;
  n2c = (import ../nix { inherit helper system; }).nix2container;
  # A derivation built by busybox's shell.
  sh =
    name: script:
    derivation {
      inherit name system;
      builder = "${busybox}/bin/sh";
      args = [
        "-c"
        script
      ];
      PATH = "${busybox}/bin";
    };
  # A root with busybox's applets in /bin, as buildEnv links them.
  rootWithBin = sh "root" ''
    mkdir -p $out/bin
    for a in ${busybox}/bin/*; do ln -s $a $out/bin/; done
  '';
  # nixpkgs' hello.
  hello = sh "hello" ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\necho "Hello, world!"\n' > $out/bin/hello
    chmod 555 $out/bin/hello
  '';
in
rec {
  inherit busybox hello rootWithBin;

  # basic.nix: an entrypoint from the store, one layer.
  basic = n2c.buildImage {
    name = "n2c-basic";
    tag = "latest";
    config.entrypoint = [ "${hello}/bin/hello" ];
  };

  # hello.nix (the README's "isolate dependencies in dedicated layers"):
  # the application's dependencies in a layer of their own.
  application = sh "conversation" ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\n${hello}/bin/hello\necho "Haaa aa... I am dying!!!"\n' > $out/bin/conversation
    chmod 555 $out/bin/conversation
  '';
  helloImage = n2c.buildImage {
    name = "n2c-hello";
    tag = "latest";
    config.entrypoint = [ "${application}/bin/conversation" ];
    layers = [ (n2c.buildLayer { deps = [ busybox hello ]; }) ];
  };

  # bash.nix: the shell's programs in /bin, by copyToRoot.
  bash = n2c.buildImage {
    name = "n2c-bash";
    tag = "latest";
    copyToRoot = [ rootWithBin ];
    config.Cmd = [ "/bin/sh" ];
  };

  # layered.nix: the closure split into 3 layers by popularity.
  layered = n2c.buildImage {
    name = "n2c-layered";
    tag = "latest";
    config.entrypoint = [ "${ex.app}/bin/app" ];
    maxLayers = 3;
  };

  # perms.nix (openbar): modes set in the layer, not in the store.
  permsRoot = sh "test" ''
    mkdir -p $out/tmp
    touch $out/tmp/test1.txt $out/tmp/test2.txt
  '';
  perms = n2c.buildImage {
    name = "n2c-perms";
    tag = "latest";
    copyToRoot = [ permsRoot ];
    config.entrypoint = [ "${busybox}/bin/ls" "-l" "/tmp/" ];
    perms = [
      {
        path = permsRoot;
        regex = "";
        mode = "0777";
      }
    ];
  };

  # perms on a store path of the image, which keeps its place in the store.
  permsStore = n2c.buildImage {
    name = "n2c-perms-store";
    tag = "latest";
    config.entrypoint = [ "${busybox}/bin/stat" "-c" "%a %u %g" "${hello}/bin/hello" ];
    perms = [
      {
        path = hello;
        regex = "/bin/hello$";
        mode = "0750";
        uid = 7;
        gid = 8;
      }
    ];
  };

  # nix-user.nix: a home directory owned by a user, with owner and mode.
  mkUser = sh "mkUser" ''
    mkdir -p $out/etc $out/home/user
    echo "user:x:1000:1000::/home/user:/bin/sh" > $out/etc/passwd
    echo "user:x:1000:" > $out/etc/group
  '';
  uidGid = n2c.buildImage {
    name = "n2c-uid-gid";
    tag = "latest";
    copyToRoot = [ mkUser ];
    perms = [
      {
        path = mkUser;
        regex = "/home/user$";
        mode = "0744";
        uid = 1000;
        gid = 1000;
        uname = "user";
        gname = "user";
      }
    ];
    config = {
      entrypoint = [ "${busybox}/bin/stat" "-c" "%a %u %g %U" "/home/user" ];
      User = "1000:1000";
    };
  };

  # from-image.nix: on a base image (here the hello example of
  # examples/default.nix; nix2container's uses alpine).
  fromImage = n2c.buildImage {
    name = "n2c-from-image";
    tag = "latest";
    fromImage = ex.hello;
    config.entrypoint = [ "${hello}/bin/hello" ];
  };

  # nix.nix: a Nix database for every store path of the image, those of
  # the nested layers included.
  nix = n2c.buildImage {
    name = "n2c-nix";
    tag = "latest";
    initializeNixDatabase = true;
    copyToRoot = [ rootWithBin ];
    config.Env = [ "USER=nobody" ];
    layers = [ (n2c.buildLayer { deps = [ hello ]; }) ];
  };

  # nested.nix: a layer on a layer; the image has both.
  nested =
    let
      low = n2c.buildLayer { deps = [ busybox ]; };
      high = n2c.buildLayer {
        deps = [ hello ];
        layers = [ low ];
      };
    in
    n2c.buildImage {
      name = "n2c-nested";
      tag = "latest";
      config.entrypoint = [ "${hello}/bin/hello" ];
      layers = [ high ];
    };

  # An application in a layer of its own above its dependencies' layer:
  # after a change to the application only its layer is built again.
  rebuildApp = sh "rebuild-app" ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\necho "app version ${appVersion}"\n' > $out/bin/app
    chmod 555 $out/bin/app
  '';
  rebuildDeps = n2c.buildLayer { deps = [ busybox hello ]; };
  rebuildAppLayer = n2c.buildLayer {
    deps = [ rebuildApp ];
    layers = [ rebuildDeps ];
  };
  rebuild = n2c.buildImage {
    name = "n2c-rebuild";
    tag = "latest";
    config.entrypoint = [ "${rebuildApp}/bin/app" ];
    layers = [ rebuildAppLayer ];
  };
}
