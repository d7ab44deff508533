# The software bill of materials of an image (`passthru.sbom`, CycloneDX
# 1.6, and `passthru.spdx`, SPDX 2.3): a JSON file the helper writes from
# the image itself (its layers say which store path is where), the closure
# graph Nix exports (narHash, narSize, references) and the `meta` of the
# contents that have one. docs/sbom.md describes the documents.
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
}:
{
  # The derivation name's stem (storeSafeName of the image name).
  baseName,
  # "cyclonedx" or "spdx".
  format,
  # The image: a launcher or an archive of layeredImage.
  image,
  # The roots of the image's closure (as imageDerivation.nix exports them).
  closure,
  # The contents list: those with `meta` give the SBOM their license,
  # homepage and description.
  contents,
}:
let
  # A license as nixpkgs writes one: an attribute set with spdxId and
  # fullName, or a free-form string.
  license =
    l:
    if builtins.isString l then
      { name = l; }
    else if builtins.isAttrs l then
      (if l.spdxId or null != null then { inherit (l) spdxId; } else { })
      // (
        if l.fullName or null != null then
          { name = l.fullName; }
        else if l.shortName or null != null then
          { name = l.shortName; }
        else
          { }
      )
    else
      { };
  licenses =
    l:
    builtins.filter (x: x != { }) (map license (if builtins.isList l then l else [ l ]));
  homepage = h: if builtins.isList h then (if h == [ ] then null else builtins.head h) else h;
  metaOf =
    m:
    (if builtins.isString (m.description or null) then { inherit (m) description; } else { })
    // (
      if builtins.isString (homepage (m.homepage or null)) then
        { homepage = homepage m.homepage; }
      else
        { }
    )
    // (if m ? license then { licenses = licenses m.license; } else { });
  withMeta = builtins.filter (
    c: builtins.isAttrs c && c ? meta && c ? outPath && metaOf c.meta != { }
  ) contents;
  extension = if format == "spdx" then "spdx.json" else "cdx.json";
in
helperDerivation "${baseName}.${extension}" {
  job = "sbom";
  inherit format;
  image = "${image}";
  graph = "closure";
  components = map (c: {
    path = "${c}";
    meta = metaOf c.meta;
  }) withMeta;
} { exportReferencesGraph.closure = closure; }
