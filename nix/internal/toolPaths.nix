# The store paths that programs the library runs in an image root come
# from: of the shell ("${bash}/bin/bash"), of each directory of a PATH
# ("${busybox}/bin:/bin"), of a package. A script chrooted into the root
# sees only what is mounted there, so these are mounted with their
# closure. Strings without context (a host's /bin/sh) give none.
{
  # storePathOf.nix: string -> the store path it lies in, or null.
  storePathOf,
}:
# A list of strings (or derivations); PATH strings are split at `:`.
strings:
let
  pieces = builtins.concatLists (
    map (
      s:
      let
        str = "${s}";
        parts = builtins.filter builtins.isString (builtins.split ":" str);
        # split drops the context; substring keeps it.
        withContext =
          builtins.foldl'
            (acc: p: {
              offset = acc.offset + builtins.stringLength p + 1;
              list = acc.list ++ [ (builtins.substring acc.offset (builtins.stringLength p) str) ];
            })
            {
              offset = 0;
              list = [ ];
            }
            parts;
      in
      if builtins.hasContext str then withContext.list else [ ]
    ) strings
  );
  paths = builtins.filter (p: p != null) (map storePathOf pieces);
in
paths
