# Whether a repository name starts with a registry host, as Docker reads
# it: a first component, followed by `/`, that has a `.` or a `:` or is
# "localhost" ("registry.example.com/app", "localhost/app"; not
# "nixos/nix", which is on Docker Hub).
{ }:
name:
let
  parts = builtins.split "/" name;
  first = builtins.head parts;
in
builtins.length parts > 1 && (builtins.match ".*[.:].*" first != null || first == "localhost")
