# One of the library's package arguments (bashInteractive, coreutils,
# cacert, shadow), for a function that needs it: the package, or a throw
# that names the argument and how to give it.
{ }:
# The public function, for the message; the argument's name; its value.
fn: arg: value:
if value == null then
  throw "${fn}: needs the library's ${arg} argument; import the library with it (import ./nix { helper = ...; ${arg} = pkgs.${arg}; }), or use the flake or default.nix, which fill it from nixpkgs"
else
  value
