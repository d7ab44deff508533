# shellScript: an executable script that runs `text` with the library's
# shell, stopping at the first failing command, with the library's
# coreutils on PATH, as dockerTools.shellScript:
#
#   stevedore.shellScript "entrypoint" "exec hello"
#
# See docs/API.md.
{
  # internal/helperDerivation.nix: name: job: extra: derivation.
  helperDerivation,
  # internal/libraryPackage.nix: the package, or a throw naming it.
  libraryPackage,
  # The library's shell and coreutils arguments.
  shell,
  coreutils,
}:
name: text:
let
  fn = "shellScript";
in
if !builtins.isString name || name == "" then
  throw "${fn}: the first argument, the script's name, must be a non-empty string such as \"entrypoint\""
else if !builtins.isString text then
  throw "${fn}: the second argument, the script's text, must be a string"
else
  helperDerivation name {
    job = "file";
    executable = true;
    text = ''
      #!${shell}
      set -e
      export PATH=${libraryPackage fn "coreutils" coreutils}/bin:/bin
      ${text}
    '';
  } { }
