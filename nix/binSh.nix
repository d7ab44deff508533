# binSh: a store path with `bin/sh`, a symlink to the bash of the
# library's bashInteractive, for images whose programs run /bin/sh
# (`contents = [ stevedore.binSh ];`), as dockerTools.binSh.
{
  # internal/storeTree.nix and internal/libraryPackage.nix.
  storeTree,
  libraryPackage,
  # The library's bashInteractive argument.
  bashInteractive,
  # The name errors give: the nix-shell images use this under theirs.
  fn ? "binSh",
}:
storeTree "bin-sh" [
  {
    type = "symlink";
    path = "bin/sh";
    target = "${libraryPackage fn "bashInteractive" bashInteractive}/bin/bash";
  }
]
