# buildImageWithNixDb: buildImage with includeNixDB = true, as in
# dockerTools: the image carries a Nix database of its store paths and
# gcroots for its contents. See docs/API.md.
lib: args: lib.buildImageAs "buildImageWithNixDb" (args // { includeNixDB = true; })
