# `<base>` of docs/API.md: the `name` argument of an image builder as its
# derivation names start, read from the arguments before they are
# checked, so a missing or non-string name fails with the fix.
{
  # storeSafeName.nix: name -> name without `/` and `:`.
  storeSafeName,
}:
args:
let
  name = args.name or (throw "stevedore: the argument `name` is required, e.g. name = \"hello\"");
in
if builtins.isString name then
  storeSafeName name
else
  throw "stevedore: name must be a string such as \"hello\""
