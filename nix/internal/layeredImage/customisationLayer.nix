# The customisation tree of an image without runAsRoot: the `contents`
# directories joined into / as a symlink forest, then extraCommands run
# in it as the build user and fakeRootCommands as root in a user
# namespace of the helper's own. Its outputs are the tree and
# `metadata`: the modes and owners the tree had before the store
# normalised them.
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
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
}:
helperDerivation "${baseName}-customisation-layer" (
  {
    job = "root";
    paths = map (p: "${p}") contents;
    inherit extraCommands fakeRootCommands;
  }
  # The shell and PATH only when there are commands, so an image without
  # them has neither in its build closure.
  // (if extraCommands != "" || fakeRootCommands != "" then { inherit shell scriptPath; } else { })
) {
  outputs = [
    "out"
    "metadata"
  ];
}
