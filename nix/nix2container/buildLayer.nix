# nix2container's buildLayer: a group of layers as a derivation of its
# own, holding each layer's compressed blob, digest and diff_id (an OCI
# layout), so that an image stacks it without compressing it again and a
# change elsewhere in the image does not rebuild it:
#
#   deps = stevedore.nix2container.buildLayer { deps = [ python ]; };
#   stevedore.nix2container.buildImage { name = "app"; layers = [ deps ]; ... }
#
# Arguments as nix2container's; see docs/API.md.
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
  # The OCI architecture of the library's `system`.
  systemArchitecture,
  # Argument checks (internal/checks.nix).
  checks,
  # internal/copyToRootList.nix: copyToRoot or contents as a list.
  copyToRootList,
}:
{
  # Store paths whose closures go into the layer.
  deps ? [ ],
  # A derivation, or a list of them, whose contents are copied to / (its
  # store path itself is not in the image; its references are).
  copyToRoot ? null,
  # A store path left out of the layer, such as the config file.
  ignore ? null,
  # buildLayer results below this one: store paths they hold are left
  # out of this one, and images using this layer get them too.
  layers ? [ ],
  # nix2container stores a non-reproducible layer's tar in the store;
  # every layer is stored here, so both values do the same.
  reproducible ? true,
  # { path; regex; mode; uid; gid; uname; gname; } entries: entries of
  # `path` (one of copyToRoot, or a store path the layer holds) whose
  # source path matches `regex` get that mode (octal string) and owner
  # in the layer.
  perms ? [ ],
  # How many store layers the closure is split into (popularity).
  maxLayers ? 1,
  # The layers' history: created_by, author and comment.
  metadata ? {
    created_by = "nix2container";
  },
  # Deprecated name of copyToRoot.
  contents ? null,
  # Private, for buildImage: the Nix database tree and its metadata,
  # copied to / with copyToRoot.
  nixDatabase ? null,
  # The image's creation time, for the history entries.
  created ? null,
  # OCI architecture of the layer's config.
  arch ? systemArchitecture,
  # Private, for buildImage's top layer: the job's `base` (fromImage),
  # whose store paths the layer leaves out; null for none.
  base ? null,
}:
let
  fn = "nix2container.buildLayer";
  toList = x: if x == null then [ ] else if builtins.isList x then x else [ x ];
  roots = copyToRootList fn copyToRoot contents;
  depsList =
    if builtins.isList deps then
      map (checks.content fn) deps
    else
      throw "${fn}: deps must be a list of store paths such as [ hello ]";
  layersList =
    if builtins.isList layers && builtins.all (l: l ? nestedLayers) layers then
      layers
    else
      throw "${fn}: layers must be a list of nix2container.buildLayer results";
  # Every layer below, nested ones first, each once.
  below = uniqueLayers (builtins.concatMap (l: l.nestedLayers ++ [ l ]) layersList);
  uniqueLayers =
    list:
    builtins.foldl' (acc: l: if builtins.any (a: a.outPath == l.outPath) acc then acc else acc ++ [ l ]) [ ] list;
  permsChecked = map (
    p:
    if !(builtins.isAttrs p && p ? path && p ? regex) then
      throw "${fn}: each perms entry needs path and regex, such as { path = root; regex = \".*\"; mode = \"0644\"; }"
    else if p ? mode && !(builtins.isString p.mode && builtins.match "0?[0-7]{3,4}" p.mode != null) then
      throw "${fn}: perms mode ${builtins.toJSON p.mode} must be an octal string such as \"0644\""
    else
      {
        path = "${p.path}";
        regex = p.regex;
      }
      // (if p ? mode then { inherit (p) mode; } else { })
      // builtins.mapAttrs (k: checks.id fn "perms ${k}") (
        builtins.intersectAttrs {
          uid = null;
          gid = null;
        } p
      )
      // builtins.mapAttrs (
        k: v: if builtins.isString v then v else throw "${fn}: perms ${k} must be a string such as \"user\""
      ) (
        builtins.intersectAttrs {
          uname = null;
          gname = null;
        } p
      )
  ) perms;
  maxLayersChecked =
    if builtins.isInt maxLayers && maxLayers >= 1 && maxLayers <= 125 then
      maxLayers
    else
      throw "${fn}: maxLayers must be a number from 1 to 125";
  history =
    if builtins.isAttrs metadata then
      builtins.intersectAttrs {
        created_by = null;
        author = null;
        comment = null;
      } metadata
    else
      throw "${fn}: metadata must be an attribute set such as { created_by = \"me\"; comment = \"app\"; }";
  trees = map (r: "${r}") (roots ++ toList nixDatabase);
  layer =
    helperDerivation "nix2container-layer" (
      {
        job = "layer";
        graph = "closure";
        exclude = map (p: "${p}") (toList ignore);
        below = map (l: "${l}") below;
        inherit trees history;
        treeMetadata = if nixDatabase == null then [ ] else [ "${nixDatabase.metadata}" ];
        perms = permsChecked;
        maxLayers = maxLayersChecked;
        architecture = arch;
        created = if created == null then null else checks.created fn "created" created;
      }
      // (if base == null then { } else { inherit base; })
    ) { exportReferencesGraph.closure = depsList ++ roots ++ toList nixDatabase ++ toList ignore; };
in
assert builtins.isBool reproducible || throw "${fn}: reproducible must be true or false";
layer
// {
  # The layers below, for the images that use this one.
  nestedLayers = below;
  # The store paths this layer's closure comes from, for an image's Nix
  # database.
  closureRoots = depsList ++ builtins.concatMap (l: l.closureRoots) layersList;
  inherit copyToRoot;
}
