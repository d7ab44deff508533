# The layered image behind streamLayeredImage, buildLayeredImage and
# buildImage: the closure of `contents` (and of `config`) in store layers,
# a customisation layer on top; see docs/API.md.
lib:
{
  # The public function, for messages.
  fn,
  # What to write: "stream" (a launcher), "docker-archive" or "oci-archive".
  output,
  # Layer compression for archives: "gzip", "zstd" or "none".
  compress ? "gzip",
  # The derivation name.
  drvName,
  # buildImage's runAsRoot: shell commands run as root in the image root;
  # null for none.
  runAsRoot ? null,
  # Whether fromImage's layers count towards maxLayers.
  countBase ? true,
}:
{
  # Repository name, lowercase.
  name,
  # Tag; null gives the hash of the output path, as in dockerTools.
  tag ? null,
  # Store paths whose contents are joined into / (a symlink forest) and
  # whose closure is layered. `copyToRoot` is the newer name; give one.
  contents ? [ ],
  copyToRoot ? null,
  # The OCI runtime config: Env, Cmd, Entrypoint, WorkingDir, User,
  # ExposedPorts, Volumes, Labels, StopSignal.
  config ? { },
  # OCI architecture; defaults to the system's.
  architecture ? lib.architectureOf lib.system,
  # Image creation time, RFC 3339, or "now" (not reproducible).
  created ? "1970-01-01T00:00:01Z",
  # Time of every file in the layers; "" means `created` (or the epoch
  # default when `created` is "now").
  mtime ? "",
  # Owner of the store files.
  uid ? 0,
  gid ? 0,
  uname ? "root",
  gname ? "root",
  # Layers of the image, the customisation layer included: 2 to 125.
  maxLayers ? 100,
  # Shell commands run in the customisation tree, as the build user.
  extraCommands ? "",
  # Shell commands run in the customisation tree as root in a user
  # namespace; the owners and modes they set are kept.
  fakeRootCommands ? "",
  # false: no store layers, only the customisation layer.
  includeStorePaths ? true,
  # true: a Nix database registering the image's store paths, and gcroots
  # for `contents`, in /nix/var/nix of the customisation layer.
  includeNixDB ? false,
  # Owner of /nix/var/nix and the database, for a non-root Nix user.
  nixUid ? 0,
  nixGid ? 0,
  # "auto" (nixpkgs' auto-layer), "popularity" (nixpkgs' popularity
  # contest) or a list of lists of store paths, one list per layer.
  layering ? "auto",
  passthru ? { },
  meta ? { },
  # A base image: a docker-archive (compressed or not), an OCI layout or
  # oci-archive, a pullImage result or another stevedore image. Its layers
  # go under the new ones unchanged.
  fromImage ? null,
  # Which image of a base archive holding several (by default the first).
  fromImageName ? null,
  fromImageTag ? null,
}:
let
  checks = lib.checks;
  imageName = checks.name fn name;
  imageTag = checks.tag fn tag;
  contentsList =
    if copyToRoot != null && copyToRoot != [ ] && contents != [ ] then
      throw "${fn}: give either contents or copyToRoot, not both; copyToRoot is the newer name"
    else
      let
        c = if copyToRoot != null then copyToRoot else contents;
        list = if builtins.isList c then c else [ c ];
      in
      map (checks.content fn) list;
  baseName = builtins.replaceStrings [ "/" ":" ] [ "-" "-" ] imageName;
  # The shell and PATH only when there are commands, so an image without
  # them has neither in its build closure.
  commandTools =
    if extraCommands != "" || fakeRootCommands != "" then { inherit (lib) shell scriptPath; } else { };
  # The tree, and the modes and owners it had before the store normalised
  # them.
  customisationOutputs = [
    "out"
    "metadata"
  ];
  customisation =
    if runAsRoot == null then
      lib.helperDerivation "${baseName}-customisation-layer" (
        {
          job = "root";
          paths = map (p: "${p}") contentsList;
          inherit extraCommands fakeRootCommands;
        }
        // commandTools
      ) { outputs = customisationOutputs; }
    else
      runAsRootLayer;
  # runAsRoot: the script as a store file (so the store paths it names are
  # its references), run by the helper in a user namespace; the layer is
  # what it changed in the root.
  runAsRootScript = lib.helperDerivation "${baseName}-run-as-root.sh" {
    job = "file";
    text = runAsRoot;
  } { };
  shellString = "${lib.shell}";
  runAsRootLayer = lib.helperDerivation "${baseName}-customisation-layer" (
    {
      job = "run-as-root";
      paths = map (p: "${p}") contentsList;
      script = "${runAsRootScript}";
      shell = shellString;
      graph = "closure";
      inherit extraCommands;
    }
    // (if extraCommands != "" then { inherit (lib) scriptPath; } else { })
    # The root starts from the base's file system.
    // withBase
  ) {
    outputs = customisationOutputs;
    # Every store path the script may use, mounted into the root.
    exportReferencesGraph.closure =
      contentsList
      ++ [ runAsRootScript ]
      ++ (
        let
          shellPath = lib.storePathOf shellString;
        in
        if shellPath != null && builtins.hasContext shellString then [ shellPath ] else [ ]
      );
  };
  # The config as a store file, so the paths it names join the closure.
  configFile = lib.helperDerivation "${baseName}-config.json" {
    job = "file";
    text = builtins.toJSON config;
  } { };
  createdChecked = checks.created fn "created" created;
  mtimeChecked = if mtime == "" then null else checks.created fn "mtime" mtime;
  # The image's closure: the contents, and what the config and the
  # customisation tree refer to.
  closureRoots = contentsList ++ [
    customisation
    configFile
  ];
  # The Nix database and gcroots, a second customisation tree.
  nixDb = lib.helperDerivation "${baseName}-nix-db" ({
    job = "nix-db";
    graph = "closure";
    exclude = [
      "${customisation}"
      "${configFile}"
    ];
    gcRoots = map (p: "${p}") contentsList;
    created = createdChecked;
    mtime = mtimeChecked;
    uid = checks.id fn "nixUid" nixUid;
    gid = checks.id fn "nixGid" nixGid;
  } // withBase) {
    outputs = [
      "out"
      "metadata"
    ];
    exportReferencesGraph.closure = closureRoots;
  };
  withNixDb =
    if !builtins.isBool includeNixDB then
      throw "${fn}: includeNixDB must be true or false"
    else if !includeNixDB then
      { }
    else if !includeStorePaths then
      throw "${fn}: includeNixDB needs includeStorePaths = true; an image without store paths has nothing to register"
    else
      {
        nixDb = "${nixDb}";
        nixDbMetadata = "${nixDb.metadata}";
      };
  base = checks.fromImage fn fromImage fromImageName fromImageTag;
  withBase = if base == null then { } else { inherit base; };
  # An archive is complete in itself and keeps no references; a launcher
  # reads the store paths it names, and keeps them.
  result = (if output == "stream" then lib.helperDerivation else lib.archiveDerivation) drvName ({
    job = "image";
    inherit output compress includeStorePaths;
    graph = "closure";
    customisation = "${customisation}";
    customisationMetadata = "${customisation.metadata}";
    exclude = [ "${configFile}" ];
    layering = checks.layering fn layering // {
      maxLayers = checks.maxLayers fn maxLayers;
      inherit countBase;
    };
    image = {
      name = imageName;
      tag = imageTag;
      created = createdChecked;
      mtime = mtimeChecked;
      inherit
        uid
        gid
        uname
        gname
        architecture
        ;
      config = checks.config fn config;
    };
  } // withNixDb // withBase) { exportReferencesGraph.closure = closureRoots; };
in
result
  // {
    inherit meta;
    imageName = imageName;
    imageTag = if imageTag != null then imageTag else lib.outputHash result;
  }
  # `nix run .#image.copyToRegistry -- docker://...` and the others.
  // lib.copyTo result
  // passthru
