# Stand-ins for the nixpkgs packages and builders that nixpkgs' dockerTools
# tests use (bash, hello, coreutils, redis, nginx, nix, buildEnv,
# writeText, runCommand, mkShell, ...), made from one static busybox and
# plain derivations, so that images.nix can keep the peer's expressions
# as they are. Every build runs busybox from the store: these build in
# the Nix sandbox too.
{
  # A busybox directory (bin/busybox and applet links), as a path, or null.
  busybox ? null,
  # A static busybox binary, used when `busybox` is null. Its directory
  # is read, so not through a link (Debian's /bin is one).
  busyboxBinary ? if builtins.pathExists /usr/bin/busybox then /usr/bin/busybox else /bin/busybox,
  system ? builtins.currentSystem,
}:
let
  # The busybox binary the first build runs.
  bootstrap =
    if busybox != null then
      "${
        builtins.path {
          path = busybox;
          name = "busybox-source";
        }
      }/bin/busybox"
    else
      # busybox takes its applet from argv[0]: keep the name "busybox".
      "${
        builtins.path {
          path = dirOf busyboxBinary;
          name = "busybox-static-binary";
          filter = path: _: baseNameOf path == baseNameOf busyboxBinary;
        }
      }/${baseNameOf busyboxBinary}";

  # pkgsStatic.busybox: every applet as a link, and a file naming its own
  # store path, so that the tree refers to itself as nixpkgs' does.
  staticBusybox = derivation {
    name = "busybox";
    inherit system;
    builder = bootstrap;
    args = [
      "sh"
      "-ec"
      ''
        b=${bootstrap}
        $b mkdir -p $out/bin $out/share
        $b cp $b $out/bin/busybox
        $b chmod 555 $out/bin/busybox
        for a in $($b --list); do
          [ "$a" = busybox ] || $b ln -s busybox $out/bin/$a
        done
        echo $out > $out/share/busybox-self
      ''
    ];
  };

  sh = "${staticBusybox}/bin/sh";

  # runCommand: a derivation built by busybox's sh with busybox on PATH.
  runCommand =
    name: env: script:
    derivation (
      {
        inherit name system;
        builder = sh;
        args = [
          "-ec"
          script
        ];
        PATH = "${staticBusybox}/bin";
      }
      // builtins.removeAttrs env [ "nativeBuildInputs" ]
    );

  writeTextFile =
    {
      name,
      text,
      executable ? false,
      destination ? "",
    }:
    runCommand name
      {
        inherit text;
        passAsFile = [ "text" ];
      }
      ''
        target=$out${destination}
        mkdir -p "$(dirname "$target")"
        cp "$textPath" "$target"
        ${if executable then ''chmod 555 "$target"'' else ""}
      '';

  writeText = name: text: writeTextFile { inherit name text; };
  writeTextDir =
    path: text:
    writeTextFile {
      name = baseNameOf path;
      inherit text;
      destination = "/${path}";
    };
  writeScript =
    name: text:
    writeTextFile {
      inherit name text;
      executable = true;
    };
  writeScriptBin =
    name: text:
    writeTextFile {
      inherit name text;
      executable = true;
      destination = "/bin/${name}";
    };

  # A package whose bin/ holds shell scripts run by busybox's sh.
  scripts =
    name: files:
    runCommand name { } (
      "mkdir -p $out/bin\n"
      + builtins.concatStringsSep "" (
        builtins.attrValues (
          builtins.mapAttrs (file: body: ''
            cat > $out/bin/${file} <<'STEVEDORE_EOF'
            #!${sh}
            ${body}
            STEVEDORE_EOF
            chmod 555 $out/bin/${file}
          '') files
        )
      )
    );

  # bash: busybox's ash under bash's name, with a --version of its own.
  # ash runs its own applets before looking at PATH; for `bash -c` a
  # function sends stat to the first one on PATH, as bash would.
  bash = scripts "bash-5.2-standin" {
    bash = ''
      if [ "$1" = --version ]; then
        echo "GNU bash, version 5.2 (stand-in: busybox ash)"
        exit 0
      fi
      if [ "$1" = -c ]; then
        shift
        script=$1
        shift
        exec ${sh} -c 'stat() { IFS=:; for d in $PATH; do if [ -x "$d/stat" ]; then unset IFS; "$d/stat" "$@"; return; fi; done; unset IFS; ${staticBusybox}/bin/busybox stat "$@"; }
      '"$script" "$@"
      fi
      exec ${sh} "$@"
    '';
  };

  # coreutils: busybox applets under coreutils' names; stat takes
  # --format as GNU stat does.
  coreutils =
    runCommand "coreutils-9.5-standin" { }
      ''
        mkdir -p $out/bin
        for a in basename cat chgrp chmod chown cp cut date dd df dirname du echo env expr false head id ln ls md5sum mkdir mktemp mv nproc printf pwd readlink realpath rm rmdir seq sha256sum sleep sort tail tee test touch tr true uname uniq wc whoami yes; do
          ln -s ${staticBusybox}/bin/busybox $out/bin/$a
        done
        cat > $out/bin/stat <<'STEVEDORE_EOF'
        #!${sh}
        for a in "$@"; do
          shift
          case "$a" in
            --format=*) set -- "$@" -c "''${a#--format=}" ;;
            *) set -- "$@" "$a" ;;
          esac
        done
        exec ${staticBusybox}/bin/busybox stat "$@"
        STEVEDORE_EOF
        chmod 555 $out/bin/stat
      '';

  # hello, with overrideAttrs reading configureFlags' --program-prefix and
  # meta.mainProgram as GNU hello's build does.
  mkHello =
    attrs:
    let
      flags = attrs.configureFlags or [ ];
      prefixes = builtins.filter (x: x != null) (
        map (
          f:
          let
            m = builtins.match " *--program-prefix=(.*)" f;
          in
          if m == null then null else builtins.head m
        ) flags
      );
      prefix = if prefixes == [ ] then "" else builtins.head prefixes;
      drv =
        stdenv.mkDerivation {
          name = "hello-2.12-standin${if prefix == "" then "" else "-" + prefix}";
          buildCommand = ''
            mkdir -p $out/bin
            printf '#!${sh}\necho "Hello, world!"\n' > $out/bin/${prefix}hello
            chmod 555 $out/bin/${prefix}hello
          '';
        }
        // {
          meta = attrs.meta or { mainProgram = "hello"; };
        };
    in
    drv
    // {
      overrideAttrs =
        f:
        let
          final = mkHello (attrs // f final attrs);
        in
        final;
    };
  hello = mkHello {
    configureFlags = [ ];
    meta.mainProgram = "hello";
  };

  redis = scripts "redis-7.2-standin" {
    redis-cli = ''
      case "$1" in
        --version) echo "redis-cli 7.2.4 (stand-in)" ;;
        ping) echo PONG ;;
        *) echo "redis-cli stand-in: $*" >&2; exit 1 ;;
      esac
    '';
    redis-server = ''
      echo "redis-server stand-in: ready"
      exec ${staticBusybox}/bin/busybox sleep 3600
    '';
  };

  # nginx: busybox httpd serving the root and port an nginx.conf gives.
  nginx = scripts "nginx-1.26-standin" {
    nginx = ''
      [ "$1" = -c ] || { echo "nginx stand-in: give -c nginx.conf" >&2; exit 1; }
      b=${staticBusybox}/bin/busybox
      port=$($b sed -n 's/^ *listen *\([0-9]*\);.*/\1/p' "$2")
      root=$($b sed -n 's/^ *root *\([^;]*\);.*/\1/p' "$2")
      exec $b httpd -f -v -p "$port" -h "$root"
    '';
  };

  # nix: the commands the tests name; nix-daemon is a link to nix, as in
  # Nix's package.
  nix =
    runCommand "nix-2.2.1-standin" { }
      ''
        mkdir -p $out/bin
        printf '#!${sh}\necho "nix (Nix) 2.2.1 (stand-in)"\n' > $out/bin/nix
        printf '#!${sh}\necho "nix-store (Nix) 2.2.1 (stand-in)"\n' > $out/bin/nix-store
        chmod 555 $out/bin/nix $out/bin/nix-store
        ln -s nix $out/bin/nix-daemon
      '';

  # buildEnv: the files of `paths` under `pathsToLink`, as symlinks in a
  # tree of directories.
  buildEnv =
    {
      name,
      paths,
      pathsToLink ? [ "/" ],
    }:
    runCommand name
      {
        inherit paths pathsToLink;
      }
      ''
        link() {
          for f in "$1"/* "$1"/.[!.]*; do
            [ -e "$f" ] || [ -L "$f" ] || continue
            n=$(basename "$f")
            if [ -d "$f" ]; then
              mkdir -p "$2/$n"
              link "$f" "$2/$n"
            elif [ ! -e "$2/$n" ]; then
              ln -s "$f" "$2/$n"
            fi
          done
        }
        mkdir -p $out
        for p in $paths; do
          for d in $pathsToLink; do
            if [ -d "$p$d" ]; then
              mkdir -p "$out$d"
              link "$p$d" "$out$d"
            fi
          done
        done
      '';

  # stdenv: a setup script with genericBuild (buildCommand, or the
  # phases' hooks) and the bin/ of the inputs on PATH.
  stdenvSetup =
    writeText "stdenv-setup"
      ''
        for p in $nativeBuildInputs $buildInputs; do
          PATH="$p/bin:$PATH"
        done
        PATH="$PATH:${coreutils}/bin:${staticBusybox}/bin"
        export PATH
        # As real stdenv's: a hook is the code in the variable it names.
        runHook() {
          eval "_hook=\"\''${$1-}\""
          [ -z "$_hook" ] || eval "$_hook"
        }
        genericBuild() {
          if [ -n "$buildCommand" ]; then
            eval "$buildCommand"
            return
          fi
          for phase in unpackPhase buildPhase installPhase; do
            eval "p=\"\$$phase\""
            [ -z "$p" ] || eval "$p"
          done
        }
      '';
  stdenvDrv = runCommand "stdenv-standin" { } ''
    mkdir -p $out
    cp ${stdenvSetup} $out/setup
  '';
  defaultBuilder = writeText "default-builder.sh" ''
    . "$stdenv/setup"
    genericBuild
  '';
  stdenv = {
    shell = "${bash}/bin/bash";
    mkDerivation =
      attrs:
      derivation (
        {
          inherit system;
          builder = "${bash}/bin/bash";
          args = [
            "-e"
            defaultBuilder
          ];
          stdenv = stdenvDrv;
        }
        // builtins.removeAttrs attrs [ "meta" ]
      );
  };
  mkShell =
    attrs:
    stdenv.mkDerivation (
      {
        nativeBuildInputs = attrs.packages or [ ] ++ attrs.nativeBuildInputs or [ ];
        name = "nix-shell";
        buildCommand = ''
          echo "mkShell is for nix-shell, not nix-build" >&2
          exit 1
        '';
      }
      // builtins.removeAttrs attrs [
        "packages"
        "nativeBuildInputs"
      ]
    );

  # cacert: a bundle at the paths nixpkgs' cacert has.
  cacert =
    runCommand "nss-cacert-standin" { }
      ''
        mkdir -p $out/etc/ssl/certs
        echo "# stand-in CA bundle" > $out/etc/ssl/certs/ca-bundle.crt
      '';

  # testers.invalidateFetcherByDrvHash: the fetcher once more, its name
  # salted with the hash of the first one's derivation, so that a change
  # of the fetcher fetches again.
  invalidateFetcherByDrvHash =
    f: args:
    let
      salt = builtins.substring 0 12 (
        baseNameOf (builtins.unsafeDiscardStringContext (f args).drvPath)
      );
    in
    f (args // { name = "${args.name or "image"}-salted-${salt}"; });
in
{
  inherit
    bash
    coreutils
    hello
    redis
    nginx
    nix
    cacert
    buildEnv
    runCommand
    writeText
    writeTextDir
    writeScript
    writeScriptBin
    stdenv
    mkShell
    ;
  bashInteractive = bash;
  runtimeShell = "${bash}/bin/bash";
  pkgsStatic.busybox = staticBusybox;
  busybox = staticBusybox;
  runCommandNoCC = runCommand;
  testers = { inherit invalidateFetcherByDrvHash; };
}
