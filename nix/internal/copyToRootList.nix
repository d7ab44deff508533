# nix2container's copyToRoot (or its deprecated name contents) as a list:
# `copyToRootList fn copyToRoot contents`, `fn` naming the function in
# messages.
{
  # warn.nix: message: value: value, after one evaluation warning.
  warn,
}:
fn: copyToRoot: contents:
let
  toList = x: if x == null then [ ] else if builtins.isList x then x else [ x ];
in
if contents != null && copyToRoot != null then
  throw "${fn}: give copyToRoot, not both copyToRoot and contents (its deprecated name)"
else if contents != null then
  warn "${fn}: contents is deprecated; use copyToRoot" (toList contents)
else
  toList copyToRoot
