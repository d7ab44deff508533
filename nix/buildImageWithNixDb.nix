# buildImageWithNixDb: buildImage with includeNixDB = true, as in
# dockerTools: the image carries a Nix database of its store paths and
# gcroots for its contents. See docs/API.md.
{
  # buildImage, naming this function in its errors.
  buildImage,
}:
args: buildImage (args // { includeNixDB = true; })
