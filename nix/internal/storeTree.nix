# A store directory of a few entries named one by one, written by the
# helper (job `tree`): `storeTree name entries`, each entry one of
#
#   { type = "symlink"; path = "bin/sh"; target = "/nix/store/...-bash/bin/bash"; }
#   { type = "file"; path = "etc/passwd"; text = "..."; executable = false; }
#   { type = "directory"; path = "var/empty"; }
#
# with `path` relative to the output. The store paths the targets and
# texts name become the directory's references.
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
}:
name: entries:
helperDerivation name {
  job = "tree";
  inherit entries;
} { }
