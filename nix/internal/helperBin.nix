# The helper as a store path of the binary itself: the builder of every
# derivation of the library.
{
  # The library's `helper` argument: a derivation with bin/stevedore, or
  # a path (or absolute path string) to the binary, copied into the store.
  helper,
}:
if builtins.isAttrs helper && helper ? outPath then
  "${helper}/bin/stevedore"
else if builtins.isPath helper || builtins.isString helper then
  builtins.path {
    path = if builtins.isString helper then /. + helper else helper;
    name = "stevedore";
  }
else
  throw "stevedore: helper must be the stevedore derivation or a path to the stevedore binary"
