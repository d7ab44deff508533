# A derivation built by the helper: `helperDerivation name job extra`.
# The helper reads its work as JSON (structured attrs) from the
# `stevedore` attribute, whose `version` a helper of another job format
# refuses; `extra` adds derivation attributes (outputs,
# exportReferencesGraph, ...).
{
  # The helper binary's store path (helperBin.nix).
  helperBin,
  # The system derivations are built for.
  system,
}:
name: job: extra:
derivation (
  {
    inherit name system;
    builder = helperBin;
    args = [ "nix-builder" ];
    __structuredAttrs = true;
    stevedore = job // {
      version = 1;
    };
  }
  // extra
)
