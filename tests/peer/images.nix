# The images of nixpkgs' dockerTools tests (the examples of
# pkgs/build-support/docker/examples.nix and the images defined in
# nixos/tests/docker-tools.nix), under the same attribute names, built by
# the stevedore library with the same function names and arguments. Only
# the packages differ: pkgs.nix gives stand-ins made from a static
# busybox. tests/it/peer/ builds and checks them.
#
#   nix-build tests/peer/images.nix -A bash --arg helper ./target/debug/stevedore
{
  # The stevedore helper (a path to the binary or a derivation).
  helper,
  # A busybox directory, as for examples/default.nix; null: the host's
  # static /bin/busybox.
  busybox ? null,
  # Where nixFromDockerHub pulls from here: { imageName, imageDigest,
  # hash } of an image the tests push to a registry on 127.0.0.1.
  pulled ? null,
  system ? builtins.currentSystem,
}:
let
  standins = import ./pkgs.nix { inherit busybox system; };
  dockerTools = import ../../nix {
    inherit helper system;
    shell = "${standins.busybox}/bin/sh";
    scriptPath = "${standins.busybox}/bin";
    inherit (standins) bashInteractive coreutils cacert;
  };
  pkgs = standins // {
    inherit dockerTools;
  };
  inherit (dockerTools)
    buildImage
    buildLayeredImage
    pullImage
    buildImageWithNixDb
    ;

  # The peer's NixOS `etc` module, reduced to the activation commands it
  # gives for one file: a link from /etc through /etc/static.
  nixosEtc = text: ''
    mkdir -p /etc/static
    ln -s ${pkgs.writeText "some-config-file" text} /etc/static/some-config-file
    ln -s /etc/static/some-config-file /etc/some-config-file
  '';

  nginxArguments =
    let
      nginxPort = "80";
      nginxConf = pkgs.writeText "nginx.conf" ''
        user nobody nobody;
        daemon off;
        error_log /dev/stdout info;
        pid /dev/null;
        events {}
        http {
          access_log /dev/stdout;
          server {
            listen ${nginxPort};
            index index.html;
            location / {
              root ${nginxWebRoot};
            }
          }
        }
      '';
      nginxWebRoot = pkgs.writeTextDir "index.html" ''
        <html><body><h1>Hello from NGINX</h1></body></html>
      '';
    in
    {
      name = "nginx-container";
      tag = "latest";
      contents = [
        dockerTools.fakeNss
        pkgs.nginx
      ];
      extraCommands = ''
        mkdir -p tmp/nginx_client_body
        mkdir -p var/log/nginx
      '';
      config = {
        Cmd = [
          "nginx"
          "-c"
          nginxConf
        ];
        ExposedPorts."${nginxPort}/tcp" = { };
      };
    };

  nixFromDockerHubArguments = {
    inherit (pulled) imageName imageDigest hash;
    finalImageTag = "2.2.1";
    finalImageName = "nix";
    # The registry here speaks plain http.
    tlsVerify = false;
  };
in
rec {
  inherit pkgs;

  bash = buildImage {
    name = "bash";
    tag = "latest";
    copyToRoot = pkgs.buildEnv {
      name = "image-root";
      paths = [ pkgs.bashInteractive ];
      pathsToLink = [ "/bin" ];
    };
  };

  redis = buildImage {
    name = "redis";
    tag = "latest";
    fromImage = bash;
    copyToRoot = pkgs.buildEnv {
      name = "image-root";
      paths = [ pkgs.redis ];
      pathsToLink = [ "/bin" ];
    };
    runAsRoot = ''
      mkdir -p /data
      cat >/bin/healthcheck <<-'EOF'
      set -x
      probe="$(/bin/redis-cli ping)"
      echo "$probe"
      if [ "$probe" = 'PONG' ]; then
        exit 0
      fi
      exit 1
      EOF
      chmod +x /bin/healthcheck
    '';
    config = {
      Cmd = [ "/bin/redis-server" ];
      WorkingDir = "/data";
      Volumes."/data" = { };
      Healthcheck = {
        Test = [
          "CMD-SHELL"
          "/bin/healthcheck"
        ];
        Interval = 30000000000;
        Timeout = 10000000000;
        Retries = 3;
      };
    };
  };

  nginx = buildLayeredImage nginxArguments;

  nixFromDockerHub = pullImage nixFromDockerHubArguments;
  testNixFromDockerHub = pkgs.testers.invalidateFetcherByDrvHash pullImage nixFromDockerHubArguments;

  nix = buildImageWithNixDb {
    name = "nix";
    tag = "latest";
    copyToRoot = pkgs.buildEnv {
      name = "image-root";
      pathsToLink = [ "/bin" ];
      paths = [
        pkgs.coreutils
        pkgs.nix
        pkgs.bash
      ];
    };
    config.Env = [
      "NIX_PAGER=cat"
      "USER=nobody"
    ];
  };

  onTopOfPulledImage = buildImage {
    name = "onTopOfPulledImage";
    tag = "latest";
    fromImage = nixFromDockerHub;
    copyToRoot = pkgs.buildEnv {
      name = "image-root";
      pathsToLink = [ "/bin" ];
      paths = [ pkgs.hello ];
    };
  };

  runAsRootExtraCommands = pkgs.dockerTools.buildImage {
    name = "runAsRootExtraCommands";
    tag = "latest";
    copyToRoot = pkgs.buildEnv {
      name = "image-root";
      pathsToLink = [ "/bin" ];
      paths = [ pkgs.coreutils ];
    };
    runAsRoot = ''echo "(runAsRoot)" > runAsRoot'';
    extraCommands = ''echo "(extraCommand)" > extraCommands'';
  };

  unstableDate = pkgs.dockerTools.buildImage {
    name = "unstable-date";
    tag = "latest";
    copyToRoot = pkgs.buildEnv {
      name = "image-root";
      pathsToLink = [ "/bin" ];
      paths = [ pkgs.coreutils ];
    };
    created = "now";
  };

  layered-image = pkgs.dockerTools.buildLayeredImage {
    name = "layered-image";
    tag = "latest";
    extraCommands = ''echo "(extraCommand)" > extraCommands'';
    config.Cmd = [ "${pkgs.hello}/bin/hello" ];
    contents = [
      pkgs.hello
      pkgs.bash
      pkgs.coreutils
    ];
  };

  layered-on-top = pkgs.dockerTools.buildImage {
    name = "layered-on-top";
    tag = "latest";
    fromImage = layered-image;
    extraCommands = ''
      mkdir ./example-output
      chmod 777 ./example-output
    '';
    config = {
      Env = [ "PATH=${pkgs.coreutils}/bin/" ];
      WorkingDir = "/example-output";
      Cmd = [
        "${pkgs.bash}/bin/bash"
        "-c"
        "echo hello > foo; cat foo"
      ];
    };
  };

  layered-on-top-layered = pkgs.dockerTools.buildLayeredImage {
    name = "layered-on-top-layered";
    tag = "latest";
    fromImage = layered-image;
    extraCommands = ''
      mkdir ./example-output
      chmod 777 ./example-output
    '';
    config = {
      Env = [ "PATH=${pkgs.coreutils}/bin/" ];
      WorkingDir = "/example-output";
      Cmd = [
        "${pkgs.bash}/bin/bash"
        "-c"
        "echo hello > foo; cat foo"
      ];
    };
  };

  layersOrder =
    let
      l1 = pkgs.dockerTools.buildImage {
        name = "l1";
        tag = "latest";
        extraCommands = ''
          mkdir -p tmp
          echo layer1 > tmp/layer1
          echo layer1 > tmp/layer2
          echo layer1 > tmp/layer3
        '';
      };
      l2 = pkgs.dockerTools.buildImage {
        name = "l2";
        fromImage = l1;
        tag = "latest";
        extraCommands = ''
          mkdir -p tmp
          echo layer2 > tmp/layer2
          echo layer2 > tmp/layer3
        '';
      };
    in
    pkgs.dockerTools.buildImage {
      name = "l3";
      fromImage = l2;
      tag = "latest";
      copyToRoot = pkgs.buildEnv {
        name = "image-root";
        pathsToLink = [ "/bin" ];
        paths = [ pkgs.coreutils ];
      };
      extraCommands = ''
        mkdir -p tmp
        echo layer3 > tmp/layer3
      '';
    };

  environmentVariablesParent = pkgs.dockerTools.buildImage {
    name = "parent";
    tag = "latest";
    config.Env = [
      "FROM_PARENT=true"
      "LAST_LAYER=parent"
    ];
  };

  environmentVariables = pkgs.dockerTools.buildImage {
    name = "child";
    fromImage = environmentVariablesParent;
    tag = "latest";
    copyToRoot = pkgs.buildEnv {
      name = "image-root";
      pathsToLink = [ "/bin" ];
      paths = [ pkgs.coreutils ];
    };
    config.Env = [
      "FROM_CHILD=true"
      "LAST_LAYER=child"
    ];
  };

  environmentVariablesLayered = pkgs.dockerTools.buildLayeredImage {
    name = "child";
    fromImage = environmentVariablesParent;
    tag = "latest";
    contents = [ pkgs.coreutils ];
    config.Env = [
      "FROM_CHILD=true"
      "LAST_LAYER=child"
    ];
  };

  another-layered-image = pkgs.dockerTools.buildLayeredImage {
    name = "another-layered-image";
    tag = "latest";
    config.Cmd = [ "${pkgs.hello}/bin/hello" ];
  };

  two-layered-image = pkgs.dockerTools.buildLayeredImage {
    name = "two-layered-image";
    tag = "latest";
    config.Cmd = [ "${pkgs.hello}/bin/hello" ];
    contents = [
      pkgs.bash
      pkgs.hello
    ];
    maxLayers = 2;
  };

  bulk-layer = pkgs.dockerTools.buildLayeredImage {
    name = "bulk-layer";
    tag = "latest";
    contents = with pkgs; [
      coreutils
      hello
    ];
    maxLayers = 2;
  };

  layered-bulk-layer = pkgs.dockerTools.buildLayeredImage {
    name = "layered-bulk-layer";
    tag = "latest";
    fromImage = two-layered-image;
    contents = with pkgs; [
      coreutils
      hello
    ];
    maxLayers = 4;
  };

  no-store-paths = pkgs.dockerTools.buildLayeredImage {
    name = "no-store-paths";
    tag = "latest";
    extraCommands = ''
      cp -r ${pkgs.pkgsStatic.busybox}/* .
      ${pkgs.hello}/bin/hello
    '';
  };

  nixLayered = pkgs.dockerTools.buildLayeredImageWithNixDb {
    name = "nix-layered";
    tag = "latest";
    contents = [
      pkgs.coreutils
      pkgs.nix
      pkgs.bash
    ];
    config.Env = [
      "NIX_PAGER=cat"
      "USER=nobody"
    ];
  };

  filesInStore = pkgs.dockerTools.buildLayeredImageWithNixDb {
    name = "file-in-store";
    tag = "latest";
    contents = [
      pkgs.coreutils
      pkgs.nix
      (pkgs.writeScriptBin "myscript" ''
        #!${pkgs.runtimeShell}
        cat ${pkgs.writeText "somefile" "some data"}
      '')
    ];
    config = {
      Cmd = [ "myscript" ];
      Env = [ "USER=root" ];
    };
  };

  unstableDateLayered = pkgs.dockerTools.buildLayeredImage {
    name = "unstable-date-layered";
    tag = "latest";
    contents = [ pkgs.coreutils ];
    created = "now";
  };

  layersUnpackOrder =
    let
      layerOnTopOf =
        parent: layerName:
        pkgs.dockerTools.buildImage {
          name = "layers-unpack-order-${layerName}";
          tag = "latest";
          fromImage = parent;
          copyToRoot = pkgs.buildEnv {
            name = "image-root";
            pathsToLink = [ "/bin" ];
            paths = [ pkgs.coreutils ];
          };
          runAsRoot = ''
            #!${pkgs.runtimeShell}
            echo -n "${layerName}" >> /layer-order
          '';
        };
      layerA = layerOnTopOf null "a";
      layerB = layerOnTopOf layerA "b";
      layerC = layerOnTopOf layerB "c";
    in
    layerC;

  bashUncompressed = pkgs.dockerTools.buildImage {
    name = "bash-uncompressed";
    tag = "latest";
    compressor = "none";
    copyToRoot = pkgs.bashInteractive;
  };

  bashZstdCompressed = pkgs.dockerTools.buildImage {
    name = "bash-zstd";
    tag = "latest";
    compressor = "zstd";
    copyToRoot = pkgs.bashInteractive;
  };

  bashNoTag = pkgs.dockerTools.buildImage {
    name = "bash-no-tag";
    copyToRoot = pkgs.bashInteractive;
  };

  bashNoTagLayered = pkgs.dockerTools.buildLayeredImage {
    name = "bash-no-tag-layered";
    contents = pkgs.bashInteractive;
  };

  bashLayeredUncompressed = pkgs.dockerTools.buildLayeredImage {
    name = "bash-layered-uncompressed";
    tag = "latest";
    compressor = "none";
    contents = pkgs.bashInteractive;
  };

  bashLayeredZstdCompressed = pkgs.dockerTools.buildLayeredImage {
    name = "bash-layered-zstd";
    tag = "latest";
    compressor = "zstd";
    contents = pkgs.bashInteractive;
  };

  bashNoTagStreamLayered = pkgs.dockerTools.streamLayeredImage {
    name = "bash-no-tag-stream-layered";
    contents = pkgs.bashInteractive;
  };

  bashLayeredWithUser =
    let
      nonRootShadowSetup =
        {
          user,
          uid,
          gid ? uid,
        }:
        with pkgs;
        [
          (writeTextDir "etc/shadow" ''
            root:!x:::::::
            ${user}:!:::::::
          '')
          (writeTextDir "etc/passwd" ''
            root:x:0:0::/root:${runtimeShell}
            ${user}:x:${toString uid}:${toString gid}::/home/${user}:
          '')
          (writeTextDir "etc/group" ''
            root:x:0:
            ${user}:x:${toString gid}:
          '')
          (writeTextDir "etc/gshadow" ''
            root:x::
            ${user}:x::
          '')
        ];
    in
    pkgs.dockerTools.buildLayeredImage {
      name = "bash-layered-with-user";
      tag = "latest";
      contents = [
        pkgs.bash
        pkgs.coreutils
      ]
      ++ nonRootShadowSetup {
        uid = 999;
        user = "somebody";
      };
    };

  layeredStoreSymlink =
    let
      target = pkgs.writeTextDir "dir/target" "Content doesn't matter.";
      symlink = pkgs.runCommand "symlink" { } "ln -s ${target} $out";
    in
    pkgs.dockerTools.buildLayeredImage {
      name = "layeredstoresymlink";
      tag = "latest";
      contents = [
        pkgs.bash
        symlink
      ];
    }
    // {
      passthru = { inherit symlink; };
    };

  prefixedImage = pkgs.dockerTools.buildImage {
    name = "registry-1.docker.io/image";
    tag = "latest";
    config.Cmd = [ "${pkgs.hello}/bin/hello" ];
  };

  prefixedLayeredImage = pkgs.dockerTools.buildLayeredImage {
    name = "registry-1.docker.io/layered-image";
    tag = "latest";
    config.Cmd = [ "${pkgs.hello}/bin/hello" ];
  };

  layeredImageWithFakeRootCommands = pkgs.dockerTools.buildLayeredImage {
    name = "layered-image-with-fake-root-commands";
    tag = "latest";
    contents = [ pkgs.pkgsStatic.busybox ];
    fakeRootCommands = ''
      mkdir -p ./home/alice
      chown 1000 ./home/alice
      ln -s ${
        pkgs.hello.overrideAttrs (
          finalAttrs: prevAttrs: {
            configureFlags = prevAttrs.configureFlags or [ ] ++ [
              " --program-prefix=layeredImageWithFakeRootCommands-"
            ];
            doCheck = false;
            meta = prevAttrs.meta // {
              mainProgram = "layeredImageWithFakeRootCommands-hello";
            };
          }
        )
      } ./hello
    '';
  };

  mergedBashAndRedis = pkgs.dockerTools.mergeImages [
    bash
    redis
  ];

  mergedBashNoTagAndRedis = pkgs.dockerTools.mergeImages [
    bashNoTag
    redis
  ];

  mergedBashFakeRoot = pkgs.dockerTools.mergeImages [
    bash
    layeredImageWithFakeRootCommands
  ];

  mergeVaryingCompressor = pkgs.dockerTools.mergeImages [
    redis
    bashUncompressed
    bashZstdCompressed
  ];

  helloOnRoot = pkgs.dockerTools.streamLayeredImage {
    name = "hello";
    tag = "latest";
    contents = [
      (pkgs.buildEnv {
        name = "hello-root";
        paths = [ pkgs.hello ];
      })
    ];
    config.Cmd = [ "hello" ];
  };

  helloOnRootNoStore = pkgs.dockerTools.streamLayeredImage {
    name = "hello";
    tag = "latest";
    contents = [
      (pkgs.buildEnv {
        name = "hello-root";
        paths = [ pkgs.hello ];
      })
    ];
    config.Cmd = [ "hello" ];
    includeStorePaths = false;
  };

  helloOnRootNoStoreFakechroot = pkgs.dockerTools.streamLayeredImage {
    name = "hello";
    tag = "latest";
    contents = [
      (pkgs.buildEnv {
        name = "hello-root";
        paths = [ pkgs.hello ];
      })
    ];
    config.Cmd = [ "hello" ];
    includeStorePaths = false;
    enableFakechroot = true;
  };

  etc = pkgs.dockerTools.streamLayeredImage {
    name = "etc";
    tag = "latest";
    enableFakechroot = true;
    fakeRootCommands = ''
      mkdir -p /etc
      ${nixosEtc ''
        127.0.0.1 localhost
        ::1 localhost
      ''}
    '';
    config.Cmd = pkgs.writeScript "etc-cmd" ''
      #!${pkgs.busybox}/bin/sh
      ${pkgs.busybox}/bin/cat /etc/some-config-file
    '';
  };

  exportBash = pkgs.dockerTools.exportImage { fromImage = bash; };

  imageViaFakeChroot = pkgs.dockerTools.streamLayeredImage {
    name = "image-via-fake-chroot";
    tag = "latest";
    config.Cmd = [ "hello" ];
    enableFakechroot = true;
    fakeRootCommands = ''
      mkdir /bin
      ln -s ${pkgs.hello}/bin/hello /bin/hello
    '';
  };

  build-image-with-path = buildImage {
    name = "build-image-with-path";
    tag = "latest";
    copyToRoot = [
      pkgs.bash
      ./test-dummy
    ];
  };

  layered-image-with-path = pkgs.dockerTools.streamLayeredImage {
    name = "layered-image-with-path";
    tag = "latest";
    contents = [
      pkgs.bash
      ./test-dummy
    ];
  };

  build-image-with-architecture = buildImage {
    name = "build-image-with-architecture";
    tag = "latest";
    architecture = "arm64";
    copyToRoot = [
      pkgs.bash
      ./test-dummy
    ];
  };

  layered-image-with-architecture = pkgs.dockerTools.streamLayeredImage {
    name = "layered-image-with-architecture";
    tag = "latest";
    architecture = "arm64";
    contents = [
      pkgs.bash
      ./test-dummy
    ];
  };

  image-with-certs = buildImage {
    name = "image-with-certs";
    tag = "latest";
    copyToRoot = pkgs.buildEnv {
      name = "image-with-certs-root";
      paths = [
        pkgs.coreutils
        pkgs.dockerTools.caCertificates
      ];
    };
    config = { };
  };

  nix-shell-basic = dockerTools.streamNixShellImage {
    name = "nix-shell-basic";
    tag = "latest";
    drv = pkgs.hello;
  };

  nix-shell-hook = dockerTools.streamNixShellImage {
    name = "nix-shell-hook";
    tag = "latest";
    drv = pkgs.mkShell {
      shellHook = ''
        echo "This is the shell hook!"
        exit
      '';
    };
  };

  nix-shell-inputs = dockerTools.streamNixShellImage {
    name = "nix-shell-inputs";
    tag = "latest";
    drv = pkgs.mkShell {
      nativeBuildInputs = [ pkgs.hello ];
    };
    command = ''
      hello
    '';
  };

  nix-shell-pass-as-file = dockerTools.streamNixShellImage {
    name = "nix-shell-pass-as-file";
    tag = "latest";
    drv = pkgs.mkShell {
      str = "this is a string";
      passAsFile = [ "str" ];
    };
    command = ''
      cat "$strPath"
    '';
  };

  nix-shell-run = dockerTools.streamNixShellImage {
    name = "nix-shell-run";
    tag = "latest";
    drv = pkgs.mkShell { };
    run = ''
      case "$-" in
      *i*) echo This shell is interactive ;;
      *) echo This shell is not interactive ;;
      esac
    '';
  };

  nix-shell-command = dockerTools.streamNixShellImage {
    name = "nix-shell-command";
    tag = "latest";
    drv = pkgs.mkShell { };
    command = ''
      case "$-" in
      *i*) echo This shell is interactive ;;
      *) echo This shell is not interactive ;;
      esac
    '';
  };

  nix-shell-command-override = dockerTools.streamNixShellImage {
    name = "nix-shell-command-override";
    tag = "latest";
    drv = pkgs.mkShell {
      packages = [ pkgs.hello ];
    };
    includeBuildDerivation = false;
    extraContents = [
      (pkgs.runCommand "bin-sh" { } ''
        mkdir -p $out/bin
        ln -s ${pkgs.bash}/bin/bash $out/bin/sh
      '')
    ];
  };

  nix-shell-writable-home = dockerTools.streamNixShellImage {
    name = "nix-shell-writable-home";
    tag = "latest";
    drv = pkgs.mkShell { };
    run = ''
      if [[ "$HOME" != "$(eval "echo ~$(whoami)")" ]]; then
        echo "\$HOME ($HOME) is not the same as ~\$(whoami) ($(eval "echo ~$(whoami)"))"
        exit 1
      fi

      if ! touch $HOME/test-file; then
        echo "home directory is not writable"
        exit 1
      fi
      echo "home directory is writable"
    '';
  };

  nix-shell-nonexistent-home = dockerTools.streamNixShellImage {
    name = "nix-shell-nonexistent-home";
    tag = "latest";
    drv = pkgs.mkShell { };
    homeDirectory = "/homeless-shelter";
    run = ''
      if [[ "$HOME" != "$(eval "echo ~$(whoami)")" ]]; then
        echo "\$HOME ($HOME) is not the same as ~\$(whoami) ($(eval "echo ~$(whoami)"))"
        exit 1
      fi

      if -e $HOME; then
        echo "home directory exists"
        exit 1
      fi
      echo "home directory doesn't exist"
    '';
  };

  nix-shell-build-derivation = dockerTools.streamNixShellImage {
    name = "nix-shell-build-derivation";
    tag = "latest";
    drv = pkgs.hello;
    run = ''
      buildDerivation
      $out/bin/hello
    '';
  };

  nix-layered = pkgs.dockerTools.streamLayeredImage {
    name = "nix-layered";
    tag = "latest";
    contents = [
      pkgs.nix
      pkgs.bash
    ];
    includeNixDB = true;
    config.Env = [ "NIX_PAGER=cat" ];
  };

  # The images nixos/tests/docker-tools.nix defines itself.

  chownTestImage = pkgs.dockerTools.streamLayeredImage {
    name = "chown-test";
    tag = "latest";
    enableFakechroot = true;
    fakeRootCommands = ''
      touch /testfile
      chown 12345:12345 /testfile
    '';
    config.Cmd = [
      "${pkgs.coreutils}/bin/stat"
      "-c"
      "%u:%g"
      "/testfile"
    ];
  };

  nonRootTestImage = pkgs.dockerTools.streamLayeredImage {
    name = "non-root-test";
    tag = "latest";
    uid = 1000;
    gid = 1000;
    uname = "user";
    gname = "user";
    config = {
      User = "user";
      Cmd = [
        "${pkgs.coreutils}/bin/stat"
        "-c"
        "%u:%g"
        "${pkgs.coreutils}/bin/stat"
      ];
    };
  };
}
