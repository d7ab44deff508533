# The customisation tree of an image without runAsRoot: the `contents`
# directories joined into / as a symlink forest, then extraCommands run
# in it as the build user and fakeRootCommands as root in a user
# namespace of the helper's own (with enableFakechroot, chrooted into
# the tree with the closure of `contents`, of the shell and PATH and of
# the store paths the commands name mounted in). Its outputs are the tree and `metadata`: the modes and
# owners the tree had before the store normalised them.
{
  # helperDerivation.nix and textFile.nix.
  helperDerivation,
  textFile,
  # toolPaths.nix: the store paths a shell or PATH string comes from.
  toolPaths,
  # The shell and PATH of the library's commands.
  shell,
  scriptPath,
}:
{
  # The image's `<base>` (baseName.nix), for the derivation name.
  baseName,
  # The checked `contents`: a list.
  contents,
  # The image's extraCommands and fakeRootCommands.
  extraCommands,
  fakeRootCommands,
  # The checked enableFakechroot.
  enableFakechroot ? false,
  # buildImage's checked keepContentsDirlinks; null for the layered
  # images, which join as symlinkJoin does.
  keepContentsDirlinks ? null,
}:
let
  # With enableFakechroot, what the commands see as the store: the
  # closures of contents, of the shell and PATH, and of the store paths
  # the commands name (a store file of them has those as references).
  chrootPaths =
    contents
    ++ toolPaths [
      shell
      scriptPath
    ]
    ++ [ (textFile "${baseName}-fake-root-commands.sh" fakeRootCommands) ];
  fakechroot = enableFakechroot && fakeRootCommands != "";
in
helperDerivation "${baseName}-customisation-layer" (
  {
    job = "root";
    paths = map (p: "${p}") contents;
    inherit extraCommands fakeRootCommands;
  }
  # The shell and PATH only when there are commands, so an image without
  # them has neither in its build closure.
  // (if extraCommands != "" || fakeRootCommands != "" then { inherit shell scriptPath; } else { })
  // (
    if fakechroot then
      {
        enableFakechroot = true;
        graph = "closure";
      }
    else
      { }
  )
  // (if keepContentsDirlinks == null then { } else { inherit keepContentsDirlinks; })
) (
  {
    outputs = [
      "out"
      "metadata"
    ];
  }
  // (if fakechroot then { exportReferencesGraph.closure = chrootPaths; } else { })
)
