# The image behind streamNixShellImage and buildNixShellImage: a shell in
# the build environment of a derivation, as `nix-shell` sets it up (the
# derivation's attributes in the environment, `$stdenv/setup` sourced,
# the shell hook run), as the build user of the Nix sandbox, with the
# store, the build directory and /tmp writable. See docs/API.md.
{
  # The scope's callPackage: the image's own layeredImage, whose
  # commands run with the library's bash and coreutils.
  callPackage,
  # internal/storeTree.nix, textFile.nix and libraryPackage.nix.
  storeTree,
  textFile,
  libraryPackage,
  # Argument checks (checks.nix) and storeSafeName.nix.
  checks,
  storeSafeName,
  # The user and group files of the image (fakeNss.nix).
  fakeNss,
  # The library's package arguments.
  bashInteractive,
  coreutils,
  cacert,
}:
{
  # The public function, for messages.
  fn,
  # "stream" or "docker-archive" (internal/layeredImage).
  output,
  # Layer compression of an archive.
  compress ? "gzip",
}:
{
  # The derivation whose build environment the shell has.
  drv,
  name ? drv.name + "-env",
  tag ? null,
  # The build user: its ids, its home.
  uid ? 1000,
  gid ? 1000,
  homeDirectory ? "/build",
  # The shell, as nix-shell's NIX_BUILD_SHELL.
  shell ? null,
  # Commands run in the environment by an interactive shell (nix-shell
  # --command), or a non-interactive one (--run); then the shell exits.
  command ? null,
  run ? null,
  # Whether `buildDerivation`, the derivation's builder, is on PATH.
  includeBuildDerivation ? true,
  # More store paths whose files are copied into the image's root.
  extraContents ? [ ],
}:
let
  bash = "${libraryPackage fn "bashInteractive" bashInteractive}/bin/bash";
  tools = libraryPackage fn "coreutils" coreutils;
  bundle = "${libraryPackage fn "cacert" cacert}/etc/ssl/certs/ca-bundle.crt";
  theShell =
    if shell == null then
      bash
    else if builtins.isString shell || builtins.isPath shell then
      "${shell}"
    else
      throw "${fn}: shell must be the path of a bash, such as \"\${pkgs.bashInteractive}/bin/bash\"";

  isDrv =
    builtins.isAttrs drv && drv ? drvAttrs
    || throw "${fn}: drv must be a derivation (made by derivation or stdenv.mkDerivation), whose build environment the image's shell gets";
  inherit (drv) drvAttrs;
  structured = drvAttrs.__structuredAttrs or false;
  userId = checks.id fn "uid" uid;
  groupId = checks.id fn "gid" gid;
  home =
    if
      builtins.isString homeDirectory
      && builtins.match "/.*" homeDirectory != null
      && builtins.match "(.*/)?[.][.]?(/.*)?" homeDirectory == null
    then
      homeDirectory
    else
      throw "${fn}: homeDirectory ${builtins.toJSON homeDirectory} must be an absolute path such as \"/build\"";
  oneOf =
    if command != null && run != null then
      throw "${fn}: give command or run, not both (nix-shell's --command and --run)"
    else if !(command == null || builtins.isString command) then
      throw "${fn}: command must be a string of shell commands, or null"
    else if !(run == null || builtins.isString run) then
      throw "${fn}: run must be a string of shell commands, or null"
    else
      true;

  # The build directory of the Nix sandbox, where builds start.
  buildDir = "/build";
  quote = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] s}'";

  # An attribute as Nix puts it into a build's environment: paths copied
  # into the store, lists joined by spaces, true as 1, false and null as
  # nothing, a derivation as its output path.
  envString =
    v:
    if builtins.isPath v then
      "${v}"
    else if builtins.isList v then
      builtins.concatStringsSep " " (map envString v)
    else
      toString v;

  # The outputs' paths, without their derivations in the image: the
  # derivation is not built, the shell is where one builds it.
  outputNames = drv.outputs or [ "out" ];
  outputPaths = builtins.listToAttrs (
    map (o: {
      name = o;
      value = builtins.unsafeDiscardStringContext drv.${o}.outPath;
    }) outputNames
  );

  # Without structured attrs: every attribute but `args` is a variable;
  # one listed in passAsFile is a file named by `<name>Path`.
  passAsFile = drvAttrs.passAsFile or [ ];
  ignoreNulls = drvAttrs.__ignoreNulls or false;
  plainNames = builtins.filter (
    n:
    n != "args" && n != "__ignoreNulls" && !(ignoreNulls && drvAttrs.${n} == null)
  ) (builtins.attrNames drvAttrs);
  plainEnv = builtins.listToAttrs (
    map (
      n:
      if builtins.elem n passAsFile then
        {
          name = "${n}Path";
          value = "${textFile "pass-as-file-${storeSafeName n}" (envString drvAttrs.${n})}";
        }
      else
        {
          name = n;
          value = envString drvAttrs.${n};
        }
    ) plainNames
  );

  # With structured attrs, as Nix gives a build: the attributes as JSON,
  # with `outputs` the output paths, and the top-level ones a shell can
  # hold as `declare` lines, in files the environment names.
  jsonValue = v: if builtins.isPath v || (builtins.isAttrs v && v ? outPath) then "${v}" else v;
  structuredNames = builtins.filter (
    n: n != "args" && n != "__structuredAttrs" && n != "__ignoreNulls" && n != "outputs"
  ) (builtins.attrNames drvAttrs);
  structuredValues =
    builtins.listToAttrs (
      map (n: {
        name = n;
        value = jsonValue drvAttrs.${n};
      }) structuredNames
    )
    // {
      outputs = outputPaths;
    };
  simple =
    v: builtins.isString v || builtins.isInt v || builtins.isFloat v || builtins.isBool v;
  shellWord =
    v:
    quote (
      if v == true then
        "1"
      else if v == false then
        ""
      else
        toString v
    );
  declaration =
    n:
    let
      v = structuredValues.${n};
      items = map jsonValue v;
      values = builtins.mapAttrs (_: jsonValue) v;
    in
    if builtins.match "[A-Za-z_][A-Za-z0-9_]*" n == null then
      ""
    else if simple v then
      "declare ${n}=${shellWord v}\n"
    else if builtins.isList v && builtins.all simple items then
      "declare -a ${n}=(${builtins.concatStringsSep "" (map (i: "${shellWord i} ") items)})\n"
    else if builtins.isAttrs v && builtins.all simple (builtins.attrValues values) then
      "declare -A ${n}=(${
        builtins.concatStringsSep "" (map (k: "[${quote k}]=${shellWord values.${k}} ") (builtins.attrNames values))
      })\n"
    else
      "";
  attrsJson = textFile "${storeSafeName drv.name}-attrs.json" (builtins.toJSON structuredValues);
  attrsSh = textFile "${storeSafeName drv.name}-attrs.sh" (
    builtins.concatStringsSep "" (map declaration (builtins.attrNames structuredValues))
  );
  structuredEnv = {
    NIX_ATTRS_JSON_FILE = "${attrsJson}";
    NIX_ATTRS_SH_FILE = "${attrsSh}";
  };

  drvEnv = if structured then structuredEnv else plainEnv // outputPaths;

  # `buildDerivation`: the derivation's builder with its arguments.
  buildDerivation = storeTree "build-derivation" [
    {
      type = "file";
      path = "bin/buildDerivation";
      executable = true;
      text = "#!${bash}\nexec ${quote (envString drvAttrs.builder)} ${
        builtins.concatStringsSep " " (map (a: quote (envString a)) (drvAttrs.args or [ ]))
      }\n";
    }
  ];
  withBuilder =
    if builtins.isBool includeBuildDerivation then
      includeBuildDerivation
    else
      throw "${fn}: includeBuildDerivation must be true or false";
  extras =
    if builtins.isList extraContents then
      extraContents
    else
      throw "${fn}: extraContents must be a list of derivations or store paths, such as [ pkgs.coreutils ]";
  staticPath = "${dirOf theShell}${if withBuilder then ":${buildDerivation}/bin" else ""}";

  # The entrypoint: what nix-shell does before it starts the user's
  # shell (the attributes of a structured derivation, the stdenv, the
  # hook), then the command, the shell by default. It must be the
  # entrypoint, not a startup file, so that a command given to
  # `docker run IMAGE ...` runs in the environment too. bash-only
  # builtins are guarded, so a POSIX `shell` (busybox ash, dash) runs
  # it as well.
  shim = storeTree "nix-shell" [
    {
      type = "file";
      path = "bin/nix-shell";
      executable = true;
      text = ''
        #!${theShell}
        unset PATH
        dontAddDisableDepTrack=1
        ${
          # `declare` lines: only bash reads them.
          if structured then
            ''[ -n "''${BASH_VERSION-}" ] && [ -e "$NIX_ATTRS_SH_FILE" ] && . "$NIX_ATTRS_SH_FILE"''
          else
            ""
        }
        [ -e "$stdenv/setup" ] && . "$stdenv/setup"
        PATH=${staticPath}:"$PATH"
        SHELL=${quote theShell}
        BASH=${quote theShell}
        set +e
        [ -n "$PS1" ] && [ -z "$NIX_SHELL_PRESERVE_PROMPT" ] && PS1='\n\[\033[1;32m\][nix-shell:\w]\$\[\033[0m\] '
        if [ -n "''${BASH_VERSION-}" ]; then
          [ "$(type -t runHook)" = function ] && runHook shellHook
        else
          # A function's name is what `command -v` prints for it.
          [ "$(command -v runHook)" = runHook ] && runHook shellHook
        fi
        unset NIX_ENFORCE_PURITY
        if [ -n "''${BASH_VERSION-}" ]; then
          shopt -u nullglob
          shopt -s execfail
        fi
        exec "$@"
      '';
    }
  ];

  # `command` or `run`, then the shell exits.
  script = textFile "nix-shell-script" ''
    ${if command != null then command else ""}
    ${if run != null then run else ""}
    exit
  '';

  env =
    {
      SSL_CERT_FILE = bundle;
      NIX_SSL_CERT_FILE = bundle;
      PATH = staticPath;
      HOME = home;
      NIX_STORE = builtins.storeDir;
      NIX_BUILD_CORES = "1";
    }
    // drvEnv
    // {
      NIX_BUILD_TOP = buildDir;
      TMPDIR = buildDir;
      TEMPDIR = buildDir;
      TMP = buildDir;
      TEMP = buildDir;
      PWD = buildDir;
      TERM = "xterm-256color";
    };

  owner = "${toString userId}:${toString groupId}";
  # The home of Nix's sandbox that is meant not to exist.
  homeMade = if home == "/homeless-shelter" then "" else " .${quote home}";
  layeredImage = callPackage ./layeredImage {
    customisationLayer = callPackage ./layeredImage/customisationLayer.nix {
      shell = bash;
      scriptPath = "${tools}/bin";
    };
  };
in
assert isDrv;
assert oneOf;
assert builtins.isBool withBuilder;
assert builtins.isList extras;
# The packages first, so a missing one is named before anything else fails.
assert builtins.seq bash (builtins.seq tools (builtins.seq bundle true));
layeredImage
  {
    inherit
      fn
      output
      compress
      ;
    # As dockerTools names them: the stream after the image, the archive
    # after the derivation.
    drvName =
      if output == "stream" then
        "stream-${storeSafeName (checks.name fn name)}"
      else
        "${storeSafeName drv.name}.tar";
  }
  {
    inherit name tag;
    contents = [
      (callPackage ../binSh.nix { inherit fn; })
      (callPackage ../usrBinEnv.nix { inherit fn; })
      (fakeNss.override {
        # The build user, so programs find its name and home.
        extraPasswdLines = [ "nixbld:x:${owner}:Build user:${home}:/noshell" ];
        extraGroupLines = [ "nixbld:!:${toString groupId}:" ];
      })
    ]
    ++ extras;
    # A single-user Nix store the build user owns, its build directory
    # and home, and a /tmp for everyone.
    fakeRootCommands = ''
      mkdir -p ./nix/store ./nix/var/nix ./etc/nix .${buildDir}${homeMade} ./tmp
      chown -R ${owner} ./nix ./etc/nix .${buildDir}${homeMade}
      chmod 1777 ./tmp
    '';
    config = {
      User = owner;
      Entrypoint = [ "${shim}/bin/nix-shell" ];
      # As nix-shell starts the shell: interactive for `command`, not
      # for `run`, the shell alone without either.
      Cmd =
        if command != null then
          [
            theShell
            "-i"
            "${script}"
          ]
        else if run != null then
          [
            theShell
            "${script}"
          ]
        else
          [ theShell ];
      WorkingDir = buildDir;
      Env = map (n: "${n}=${env.${n}}") (builtins.attrNames env);
    };
  }
