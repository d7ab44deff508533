# A derivation whose output is an image archive or layout: complete in
# itself, so it keeps no references to the store paths its config and
# history name, and `nix copy` of an image copies the image alone (as
# dockerTools' tarball). Nix 2.16 and later honour
# unsafeDiscardReferences; older Nix ignores it, and the archive then
# refers to the image's closure.
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
}:
name: job: extra:
helperDerivation name job (extra // { unsafeDiscardReferences.out = true; })
