# `makeOverridable f args`: `f args`, with `.override` added when the
# result is an attribute set. `result.override new` is `f` called again
# with `args // new` (`new` a set, or a function of the old arguments
# giving one), overridable in turn. nixpkgs' lib.makeOverridable does
# this and more (overrideDerivation); the library evaluates without
# nixpkgs, so this is the part it needs.
{ }:
let
  makeOverridable =
    f: args:
    let
      result = f args;
      override =
        new: makeOverridable f (args // (if builtins.isFunction new then new args else new));
    in
    if builtins.isAttrs result then result // { inherit override; } else result;
in
makeOverridable
