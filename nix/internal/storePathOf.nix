# The store path a string such as "${bash}/bin/bash" lies in, keeping the
# string's context (substring does, match does not); null for a string
# outside the store. exportReferencesGraph takes store paths only, on
# Nix 2.8 not a path inside one.
{ }:
s:
let
  m = builtins.match "(${builtins.storeDir}/[^/]+)(/.*)?" (builtins.unsafeDiscardStringContext s);
in
if m == null then null else builtins.substring 0 (builtins.stringLength (builtins.head m)) s
