# The customisation tree of buildImage's runAsRoot: the script, a store
# file (so the store paths it names are its references), run by the
# helper as root in a user namespace, chrooted into the image root (the
# base's file system, and `contents` joined in); the tree is what it
# changed, with whiteouts for what it deleted, and then extraCommands run
# in it. Outputs as customisationLayer.nix.
{
  # helperDerivation.nix and textFile.nix.
  helperDerivation,
  textFile,
  # toolPaths.nix: the store paths a shell or PATH string comes from.
  toolPaths,
  # The library's shell, which runs the script inside the root, and PATH
  # for extraCommands.
  shell,
  scriptPath,
  # The library's coreutils: the script's PATH is its bin/ then /bin, as
  # in dockerTools; null: the PATH of a root shell.
  coreutils,
}:
{
  # The image's `<base>` (baseName.nix), for the derivation names.
  baseName,
  # The checked `contents`: a list.
  contents,
  # The shell commands to run as root.
  runAsRoot,
  # Shell commands run in the tree afterwards, as the build user.
  extraCommands,
  # The job's base: { base = ...; } (checks.fromImage) or { }.
  withBase,
  # buildImage's keepContentsDirlinks, checked.
  keepContentsDirlinks,
}:
let
  script = textFile "${baseName}-run-as-root.sh" runAsRoot;
  shellString = "${shell}";
  # A shell and coreutils from the store are mounted into the root with
  # their closure.
  shellPaths = toolPaths [ shellString ];
  withCoreutils =
    if coreutils == null then
      { }
    else
      {
        path = "${coreutils}/bin:/bin";
      };
in
helperDerivation "${baseName}-customisation-layer" (
  {
    job = "run-as-root";
    paths = map (p: "${p}") contents;
    script = "${script}";
    shell = shellString;
    graph = "closure";
    inherit extraCommands keepContentsDirlinks;
  }
  // withCoreutils
  // (if extraCommands != "" then { inherit scriptPath; } else { })
  # The root starts from the base's file system.
  // withBase
) {
  outputs = [
    "out"
    "metadata"
  ];
  # Every store path the script may use, mounted into the root.
  exportReferencesGraph.closure =
    contents ++ [ script ] ++ shellPaths ++ (if coreutils == null then [ ] else [ coreutils ]);
}
