# `makeOverridable f args`: `f args`, with `override` added to the result
# when it is an attribute set, as nixpkgs' lib.makeOverridable gives it:
#
#   image.override { tag = "v2"; }
#   image.override (old: { config = old.config // { User = "app"; }; })
#
# calls `f` again with the arguments updated (an attribute set is merged
# over them; a function gets them and returns what to merge), and the new
# result can be overridden in turn. The library evaluates without nixpkgs,
# so this is the small part of lib.makeOverridable it needs (no
# overrideDerivation).
{ }:
let
  makeOverridable =
    f: args:
    let
      result = f args;
      override =
        update: makeOverridable f (args // (if builtins.isFunction update then update args else update));
    in
    if builtins.isAttrs result then result // { inherit override; } else result;
in
makeOverridable
