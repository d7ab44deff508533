# nix2container's buildImage: an image whose layers are derivations of
# their own (`layers`, nix2container.buildLayer results), with one more
# layer on top for the config's closure and `copyToRoot`:
#
#   stevedore.nix2container.buildImage {
#     name = "app";
#     config.entrypoint = [ "${app}/bin/app" ];
#     layers = [ (stevedore.nix2container.buildLayer { deps = [ python ]; }) ];
#   }
#
# The result is a stream launcher that reads the layer blobs from the
# store as they are (`./result | podman load`, `stevedore push ./result
# docker://...`), with nix2container's attributes. See docs/API.md.
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
  # Argument checks (internal/checks.nix).
  checks,
  # The OCI architecture of the library's `system`.
  systemArchitecture,
  # storeSafeName.nix, outputHash.nix, textFile.nix.
  storeSafeName,
  outputHash,
  textFile,
  # The copyTo* apps of the result (internal/copyTo.nix).
  copyTo,
  # The other nix2container functions (buildLayer).
  nix2container,
  # internal/copyToRootList.nix: copyToRoot or contents as a list.
  copyToRootList,
}:
{
  # Repository name, lowercase.
  name,
  # Tag; null: the hash of the output path.
  tag ? null,
  # The OCI runtime config, with the OCI JSON's field names in any case
  # (entrypoint, Cmd, env, WorkingDir, ...), as nix2container reads them.
  config ? { },
  # nix2container.buildLayer results, lowest first; their nested layers
  # go below them. Store paths they hold are in no other layer.
  layers ? [ ],
  # A derivation, or a list of them, whose contents are copied to /.
  copyToRoot ? null,
  # A base image: pullImage's, pullImageFromManifest's, or any image
  # stevedore reads (docker-archive, OCI layout, launcher).
  fromImage ? null,
  # Image architecture, in OCI terms.
  arch ? systemArchitecture,
  # Modes and owners on copyToRoot's entries; see buildLayer.
  perms ? [ ],
  # Store layers the config's closure (without `layers`) is split into.
  maxLayers ? 1,
  # true: a Nix database registering every store path of the image.
  initializeNixDatabase ? false,
  # With initializeNixDatabase: owner of /nix/store and /nix/var/nix.
  nixUid ? 0,
  nixGid ? 0,
  # Image creation time, RFC 3339 or "now".
  created ? "1970-01-01T00:00:01Z",
  # Deprecated name of copyToRoot.
  contents ? null,
  # The result's meta.
  meta ? { },
}:
let
  fn = "nix2container.buildImage";
  imageName = checks.name fn name;
  imageTag = checks.tag fn tag;
  baseName = storeSafeName imageName;
  createdChecked = checks.created fn "created" created;
  # nix2container hands the config to Go's JSON decoder, which matches
  # field names in any case.
  canonical = builtins.listToAttrs (
    map (k: {
      name = lowerKey k;
      value = k;
    }) checks.configKeys
  );
  lowerKey = builtins.replaceStrings (upper) (lower);
  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  configSet =
    if !builtins.isAttrs config then
      throw "${fn}: config must be an attribute set such as { entrypoint = [ \"/bin/hello\" ]; }"
    else
      builtins.listToAttrs (
        map (k: {
          name =
            canonical.${lowerKey k}
              or (throw "${fn}: config has unknown key ${builtins.toJSON k}; use ${builtins.concatStringsSep ", " (builtins.attrValues canonical)}");
          value = config.${k};
        }) (builtins.attrNames config)
      );
  configFile = textFile "${baseName}-config.json" (builtins.toJSON configSet);
  roots = copyToRootList fn copyToRoot contents;
  layersList =
    if builtins.isList layers && builtins.all (l: l ? nestedLayers) layers then
      layers
    else
      throw "${fn}: layers must be a list of nix2container.buildLayer results";
  nixDatabase =
    if !builtins.isBool initializeNixDatabase then
      throw "${fn}: initializeNixDatabase must be true or false"
    else if !initializeNixDatabase then
      null
    else
      let
        layerRoots = builtins.concatMap (l: l.closureRoots) layersList;
      in
      helperDerivation "${baseName}-nix-db" {
        job = "nix-db";
        graph = "closure";
        exclude = [ "${configFile}" ] ++ map (r: "${r}") roots;
        gcRoots = map (p: "${p}") layerRoots;
        created = createdChecked;
        mtime = null;
        uid = checks.id fn "nixUid" nixUid;
        gid = checks.id fn "nixGid" nixGid;
      } {
        outputs = [
          "out"
          "metadata"
        ];
        exportReferencesGraph.closure = [ configFile ] ++ roots ++ layerRoots;
      };
  # The top layer: the config's closure without `layers`, and copyToRoot.
  customisation = nix2container.buildLayer {
    deps = [ configFile ];
    ignore = configFile;
    copyToRoot = roots;
    layers = layersList;
    inherit
      perms
      maxLayers
      nixDatabase
      arch
      ;
    created = createdChecked;
    base = checks.fromImage fn fromImage null null;
  };
  allLayers = customisation.nestedLayers ++ [ customisation ];
  base =
    if fromImage == null then
      { layers = map (l: "${l}") allLayers; }
    else
      (checks.fromImage fn fromImage null null) // { layers = map (l: "${l}") allLayers; };
  image = helperDerivation "image-${baseName}" {
    job = "image";
    output = "stream";
    graph = "closure";
    exclude = [ "${configFile}" ];
    includeStorePaths = false;
    inherit base;
    layering = {
      strategy = "explicit";
      maxLayers = 2;
      countBase = false;
    };
    image = {
      name = imageName;
      tag = imageTag;
      created = createdChecked;
      architecture = arch;
      config = configSet;
    };
  } { exportReferencesGraph.closure = [ configFile ]; };
  finalTag = if imageTag != null then imageTag else outputHash image;
in
image
// {
  inherit meta imageName fromImage;
  imageTag = finalTag;
  # Cheap to evaluate, for tools outside Nix; not an input of other
  # derivations (the image need not be built).
  imageRefUnsafe = builtins.unsafeDiscardStringContext "${imageName}:${finalTag}";
  # The top layer, and every layer of the image but the base's.
  inherit customisation;
  layers = allLayers;
}
// (
  let
    apps = copyTo image;
    launcher =
      name: job:
      (helperDerivation name (
        {
          job = "launcher";
          inherit name;
          image = "${image}";
        }
        // job
      ) { })
      // {
        meta.mainProgram = name;
      };
  in
  apps
  // {
    # As nix2container's: to docker://<imageName>:<imageTag> unless the
    # first argument names another destination.
    copyToRegistry = launcher "copy-to-registry" {
      action = "copy-to-registry";
      destination = "docker://${imageName}:${finalTag}";
    };
    copyTo = launcher "copy-to" { action = "copy-to-registry"; };
  }
)
