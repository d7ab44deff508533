# usrBinEnv: a store path with `usr/bin/env`, a symlink to the env of the
# library's coreutils, so scripts starting `#!/usr/bin/env sh` run in
# the image, as dockerTools.usrBinEnv.
{
  # internal/storeTree.nix and internal/libraryPackage.nix.
  storeTree,
  libraryPackage,
  # The library's coreutils argument.
  coreutils,
  # The name errors give: the nix-shell images use this under theirs.
  fn ? "usrBinEnv",
}:
storeTree "usr-bin-env" [
  {
    type = "symlink";
    path = "usr/bin/env";
    target = "${libraryPackage fn "coreutils" coreutils}/bin/env";
  }
]
