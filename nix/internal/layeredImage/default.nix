# The layered image behind streamLayeredImage, buildLayeredImage and
# buildImage: the arguments checked, then the closure of `contents` (and
# of `config`) in store layers and a customisation layer on top, made of
# the derivations beside this file; see docs/API.md.
{
  # Argument checks (checks.nix).
  checks,
  # The OCI architecture and variant of the library's `system`.
  systemArchitecture,
  systemVariant,
  # The helper binary, the stream launchers' program (streamScript).
  helperBin,
  # storeSafeName.nix and outputHash.nix.
  storeSafeName,
  outputHash,
  # The derivations of an image, beside this file.
  customisationLayer,
  runAsRootLayer,
  configFile,
  nixDbTree,
  imageDerivation,
  # The SBOM derivations (sbom.nix).
  imageSbom,
  # The copyTo* apps of the result (copyTo.nix).
  copyTo,
}:
{
  # The public function, for messages.
  fn,
  # What to write: "stream" (a launcher), "docker-archive" or "oci-archive".
  output,
  # Layer compression of an archive: "gzip", "zstd" or "none".
  compress ? "gzip",
  # The derivation name.
  drvName,
  # buildImage's runAsRoot: shell commands run as root in the image root;
  # null for none.
  runAsRoot ? null,
  # Whether fromImage's layers count towards maxLayers (buildImage's do
  # not: it always adds two layers).
  countBase ? true,
  # buildImage's keepContentsDirlinks, checked; null for the others.
  keepContentsDirlinks ? null,
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
  # ExposedPorts, Volumes, Labels, StopSignal; Docker's Healthcheck, OnBuild,
  # Shell. null (buildImage's dockerTools default) is { }.
  config ? { },
  # OCI architecture; defaults to the system's.
  architecture ? systemArchitecture,
  # OCI platform variant ("v7"); defaults to the system's (null on CPUs
  # without one).
  variant ? systemVariant,
  # Image creation time, RFC 3339, or "now" (not reproducible).
  created ? "1970-01-01T00:00:01Z",
  # Time of every file in the layers, RFC 3339, or "now" (the time the
  # image is written; not reproducible); "" means `created` (or
  # 1970-01-01T00:00:01Z when `created` is "now").
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
  # namespace, after extraCommands; the owners and modes they set are
  # kept.
  fakeRootCommands ? "",
  # true: fakeRootCommands run chrooted into the tree, which they see as
  # /, with the store paths of contents, shell and PATH mounted in.
  enableFakechroot ? false,
  # false: no store layers, only the customisation layer.
  includeStorePaths ? true,
  # true: a Nix database registering the image's store paths, and gcroots
  # for `contents`, in /nix/var/nix of the customisation layer.
  includeNixDB ? false,
  # Owner of the /nix/store directory and of /nix/var/nix with all below
  # it, for a Nix that runs as that user.
  nixUid ? 0,
  nixGid ? 0,
  # "auto" (nixpkgs' auto-layer, the default), "popularity" (nixpkgs'
  # popularity contest) or a list of lists of store paths, one list per layer.
  layering ? null,
  # dockerTools' layering pipeline (a list of steps, or a JSON file of
  # one), instead of `layering`; maxLayers does not bound it. `debug`
  # prints how the layers were planned to the build log.
  layeringPipeline ? null,
  debug ? false,
  # Attributes added to the result, last.
  passthru ? { },
  # The result's `meta`.
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
  imageName = checks.name fn name;
  configSet = if config == null then { } else config;
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
  baseName = storeSafeName imageName;
  base = checks.fromImage fn fromImage fromImageName fromImageTag;
  withBase = if base == null then { } else { inherit base; };
  createdChecked = checks.created fn "created" created;
  mtimeChecked = if mtime == "" then null else checks.created fn "mtime" mtime;

  customisation =
    if runAsRoot == null then
      customisationLayer {
        inherit
          baseName
          extraCommands
          fakeRootCommands
          keepContentsDirlinks
          ;
        enableFakechroot = checks.bool fn "enableFakechroot" enableFakechroot;
        contents = contentsList;
      }
    else
      runAsRootLayer {
        inherit
          baseName
          runAsRoot
          extraCommands
          withBase
          keepContentsDirlinks
          ;
        contents = contentsList;
      };
  configJson = configFile {
    inherit baseName;
    config = configSet;
  };
  # The image's closure: the contents, and what the config and the
  # customisation tree refer to.
  closure = contentsList ++ [
    customisation
    configJson
  ];
  nixDb =
    if !builtins.isBool includeNixDB then
      throw "${fn}: includeNixDB must be true or false"
    else if !includeNixDB then
      null
    else if !includeStorePaths then
      throw "${fn}: includeNixDB needs includeStorePaths = true; an image without store paths has nothing to register"
    else
      nixDbTree {
        inherit
          baseName
          closure
          customisation
          withBase
          ;
        configFile = configJson;
        contents = contentsList;
        created = createdChecked;
        mtime = mtimeChecked;
        uid = checks.id fn "nixUid" nixUid;
        gid = checks.id fn "nixGid" nixGid;
      };
  result = imageDerivation {
    name = drvName;
    inherit
      output
      compress
      includeStorePaths
      customisation
      closure
      nixDb
      withBase
      ;
    configFile = configJson;
    layering =
      checks.layering fn { inherit layering layeringPipeline debug; }
      // {
        inherit countBase;
      }
      // (if layeringPipeline == null then { maxLayers = checks.maxLayers fn maxLayers; } else { });
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
      config = checks.config fn configSet;
    }
    # Only given, so images without a variant keep their derivations.
    // (if checks.variant fn variant == null then { } else { inherit variant; });
  };
in
result
// {
  inherit meta imageName;
  imageTag = if imageTag != null then imageTag else outputHash result;
  # The platform the image is for, which buildImageIndex reads.
  imagePlatform = {
    os = "linux";
    inherit architecture;
    variant = checks.variant fn variant;
  };
  # dockerTools' passthru: the customisation layer (buildImage's `layer`).
  layer = customisation;
}
# A stream launcher, as dockerTools marks it; its program and the image
# description it runs (here the launcher itself, holding the spec).
// (
  if output == "stream" then
    {
      isExe = true;
      streamScript = helperBin;
      conf = result;
    }
  else
    { }
)
# Software bills of materials of the image, from its layers and closure.
// {
  sbom = imageSbom {
    inherit baseName closure;
    format = "cyclonedx";
    image = result;
    contents = contentsList;
  };
  spdx = imageSbom {
    inherit baseName closure;
    format = "spdx";
    image = result;
    contents = contentsList;
  };
}
# `nix run .#image.copyToRegistry -- docker://...` and the others.
// copyTo result
// passthru
