# The library as one scope: a fixed point of named values (the library's
# arguments, the private helpers, the public functions), where each file
# is a function of the names its argument pattern lists, and
# `callPackage` fills them from the scope (builtins.functionArgs), so
# every file says what it uses. nixpkgs' lib.makeScope and callPackage do
# the same, but the library evaluates without nixpkgs, so this is the
# small part of them it needs (no overrideScope; the public results'
# `override` comes from makeOverridable.nix).
#
#   scope (self: { a = 1; b = self.callPackage ./b.nix { }; })
#
# `b.nix` is `{ a }: ...`; the second argument of callPackage gives or
# replaces values for that one call.
members:
let
  self = members self // {
    callPackage =
      file: overrides:
      let
        f = import file;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) self // overrides);
  };
in
self
