# The hash part of a derivation's output path: dockerTools' tag for an
# image given none.
{ }:
drv: builtins.substring 0 32 (baseNameOf (builtins.unsafeDiscardStringContext drv.outPath))
