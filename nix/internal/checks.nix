# Argument checks made at evaluation: each failure is one `throw` that
# names the function, the argument and the fix. Each check takes the
# public function's name (`fn`) first, for the message, and returns the
# value it accepts.
{
  # hasRegistryHost.nix: name -> whether it starts with a registry host.
  hasRegistryHost,
  # warn.nix: message: value: value, after one evaluation warning.
  warn,
}:
let
  component = "[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*";
  domainComponent = "([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
  domain = "${domainComponent}(\\.${domainComponent})*(:[0-9]+)?";
  matches = re: s: builtins.match re s != null;
  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  toLower = builtins.replaceStrings upper lower;
  pathOf =
    name:
    if hasRegistryHost name then
      builtins.concatStringsSep "/" (builtins.tail (builtins.filter builtins.isString (builtins.split "/" name)))
    else
      name;
  hostOf = name: builtins.head (builtins.split "/" name);
  validName =
    name:
    matches "${component}(/${component})*" (pathOf name)
    && (!hasRegistryHost name || matches domain (hostOf name));
  # An argument that picks an image of an archive by name or tag, or null
  # for no pick.
  configKeys = [
    "Env"
    "Cmd"
    "Entrypoint"
    "WorkingDir"
    "User"
    "ExposedPorts"
    "Volumes"
    "Labels"
    "StopSignal"
    # Docker's, beside the OCI ones.
    "Healthcheck"
    "OnBuild"
    "Shell"
  ];
  optionalString =
    fn: what: v:
    if v == null || builtins.isString v then v else throw "${fn}: ${what} must be a string or null";
in
{
  inherit optionalString;

  # A repository name, lowercase, as registries require. A name that is
  # valid once lowercased is lowercased, with one warning, as dockerTools
  # lowercases image names.
  name =
    fn: name:
    let
      lowered = (if hasRegistryHost name then hostOf name + "/" else "") + toLower (pathOf name);
    in
    if !builtins.isString name then
      throw "${fn}: name must be a string such as \"hello\""
    else if validName name then
      name
    else if validName lowered then
      warn "${fn}: name \"${name}\" has uppercase letters, which registries reject; the image is named \"${lowered}\": use name = \"${lowered}\"" lowered
    else
      throw "${fn}: name \"${name}\" is not a valid repository name; use lowercase letters, digits and . _ __ - between them, with / between components";

  # A platform variant ("v7"), or null for none.
  variant =
    fn: v:
    if v == null || (builtins.isString v && matches "[a-z0-9]+" v) then
      v
    else
      throw "${fn}: variant ${builtins.toJSON v} is not a platform variant; use lowercase letters and digits such as \"v7\" or \"v8\", or null for none";

  # A true or false argument.
  bool =
    fn: arg: v:
    if builtins.isBool v then v else throw "${fn}: ${arg} must be true or false";

  # A tag, or null for the output hash.
  tag =
    fn: tag:
    if tag == null || (builtins.isString tag && matches "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}" tag) then
      tag
    else
      throw "${fn}: tag ${builtins.toJSON tag} is not a valid tag; use 1 to 128 letters, digits, _ . - not starting with . or -, or null for the output hash";

  maxLayers =
    fn: n:
    if builtins.isInt n && n >= 2 && n <= 125 then
      n
    else
      throw "${fn}: maxLayers ${builtins.toJSON n} must be an integer from 2 to 125 (one layer is the customisation layer; registries and overlayfs limit the rest)";

  # A numeric user or group id.
  id =
    fn: arg: n:
    if builtins.isInt n && n >= 0 then
      n
    else
      throw "${fn}: ${arg} ${builtins.toJSON n} must be a non-negative integer (a numeric id)";

  compressor =
    fn: c:
    let
      table = {
        gz = "gzip";
        zstd = "zstd";
        none = "none";
      };
    in
    table.${c}
      or (throw "${fn}: compressor ${builtins.toJSON c} is unknown; use \"gz\", \"zstd\" or \"none\"");

  # RFC 3339 times, or "now" (the time the image is written).
  created =
    fn: arg: t:
    if
      t == "now"
      || (
        builtins.isString t
        && matches "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})" t
      )
    then
      t
    else
      throw "${fn}: ${arg} ${builtins.toJSON t} is not a date; use an RFC 3339 time such as \"1970-01-01T00:00:01Z\" or \"now\"";

  # The keys of the runtime config: the OCI config's, and Docker's.
  inherit configKeys;

  # The runtime config: only the keys the OCI config has.
  config =
    fn: config:
    let
      known = configKeys;
      unknown = builtins.filter (k: !builtins.elem k known) (builtins.attrNames config);
    in
    if !builtins.isAttrs config then
      throw "${fn}: config must be an attribute set such as { Cmd = [ \"/bin/hello\" ]; }"
    else if unknown != [ ] then
      throw "${fn}: config has unknown key ${builtins.toJSON (builtins.head unknown)}; use ${builtins.concatStringsSep ", " known}"
    else
      config;

  # layering, layeringPipeline and debug as the helper's `layering`,
  # without maxLayers (a pipeline bounds its layers itself).
  layering =
    fn:
    {
      layering,
      layeringPipeline,
      debug,
    }:
    let
      l = if layering == null then "auto" else layering;
      # Store paths in the steps as strings that keep their context, so
      # they are in the build's inputs (and the closure).
      steps =
        v:
        if builtins.isList v then
          map steps v
        else if builtins.isAttrs v && v ? outPath || builtins.isPath v then
          "${v}"
        else if builtins.isAttrs v then
          builtins.mapAttrs (_: steps) v
        else
          v;
      p = layeringPipeline;
      strategy =
        if p != null then
          (
            if layering != null then
              throw "${fn}: give either layering or layeringPipeline, not both"
            else if builtins.isList p then
              {
                strategy = "pipeline";
                pipeline = steps p;
              }
            else if
              builtins.isPath p || builtins.isAttrs p && p ? outPath || builtins.isString p && builtins.hasContext p
            then
              {
                strategy = "pipeline";
                pipelineFile = "${p}";
              }
            else
              throw "${fn}: layeringPipeline must be a list of steps such as [ [ \"popularity_contest\" ] [ \"limit_layers\" 10 ] ], or a JSON file of one given as a path or a derivation"
          )
        else if l == "auto" || l == "popularity" then
          {
            strategy = l;
          }
        else if builtins.isList l && builtins.all builtins.isList l then
          (
            if builtins.elem [ ] l then
              let
                # The number of the first empty list, from 1.
                at = builtins.head (
                  builtins.filter (i: builtins.elemAt l (i - 1) == [ ]) (
                    builtins.genList (i: i + 1) (builtins.length l)
                  )
                );
              in
              throw "${fn}: layering list ${toString at} is empty; each list is one layer, so name at least one store path in it or leave it out"
            else
              {
                strategy = "explicit";
                layers = map (map (p: "${p}")) l;
              }
          )
        else
          throw "${fn}: layering ${builtins.toJSON l} is unknown; use \"auto\", \"popularity\" or a list of lists of store paths";
    in
    if !builtins.isBool debug then
      throw "${fn}: debug must be true or false"
    else
      strategy // (if debug then { debug = true; } else { });

  # fromImage, fromImageName and fromImageTag as the helper's `base`, or
  # null without a base.
  fromImage =
    fn: image: name: tag:
    if image == null then
      (
        if name != null || tag != null then
          throw "${fn}: fromImageName and fromImageTag pick an image of fromImage; give fromImage too"
        else
          null
      )
    else if
      builtins.isAttrs image && image ? outPath
      || builtins.isPath image
      || builtins.isString image && builtins.substring 0 1 image == "/"
    then
      {
        path = "${image}";
        name = optionalString fn "fromImageName" name;
        tag = optionalString fn "fromImageTag" tag;
      }
    else
      throw "${fn}: fromImage must be an image (a derivation such as buildLayeredImage's or pullImage's result) or a path to a docker-archive or OCI layout";

  # A contents entry, as it is. A derivation file (`.drv`) is taken with
  # its outputs as inputs of the build (`drv.drvPath`, whose context
  # brings them) and refused without: Nix's exportReferencesGraph adds
  # the outputs of every derivation file in a closure, and a build can
  # read only its inputs (in the sandbox; on a fresh store they are not
  # even valid).
  content =
    fn: p:
    let
      s = "${p}";
      plain = builtins.unsafeDiscardStringContext s;
      context = builtins.getContext s;
    in
    if builtins.match ".*[.]drv" plain != null && !((context.${plain} or { }).allOutputs or false) then
      throw "${fn}: contents ${plain} is a derivation file without its outputs (as unsafeDiscardOutputDependency leaves it); Nix exports the outputs of the derivation files in a closure, so they must be inputs of the build: give drv.drvPath itself, or the derivation"
    else
      p;
}
