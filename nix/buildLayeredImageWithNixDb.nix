# buildLayeredImageWithNixDb: buildLayeredImage with includeNixDB = true,
# as in dockerTools: the image carries a Nix database of its store paths
# and gcroots for its contents. See docs/API.md.
{
  # buildLayeredImage, naming this function in its errors.
  buildLayeredImage,
}:
args: buildLayeredImage (args // { includeNixDB = true; })
