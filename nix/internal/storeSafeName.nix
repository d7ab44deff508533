# An image or repository name as it may go into a derivation name: store
# path names have no `/` and no `:`, so each becomes `-`
# ("registry.example.com:5000/app" gives "registry.example.com-5000-app").
{ }:
builtins.replaceStrings [ "/" ":" ] [ "-" "-" ]
