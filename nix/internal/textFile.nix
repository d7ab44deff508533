# A store file holding `text`, written by the helper: `textFile name text`.
# The store paths the text names become the file's references, so a file
# carries them into the closure of whatever uses it.
{
  # helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
}:
name: text:
helperDerivation name {
  job = "file";
  inherit text;
} { }
