# The image's runtime config as a store file: the store paths it names
# (`Cmd = [ "${hello}/bin/hello" ]`) become its references, and so join
# the image's closure. The image job excludes the file itself from the
# layers.
{
  # textFile.nix: name: text: derivation.
  textFile,
}:
{
  # The image's `<base>` (baseName.nix), for the derivation name.
  baseName,
  # The `config` argument, as given.
  config,
}:
textFile "${baseName}-config.json" (builtins.toJSON config)
