# One evaluation warning, then the value: `warn message value`. Nix 2.23
# and later have builtins.warn; older Nix prints the message with
# builtins.trace, marked as a warning.
{ }:
message: value:
if builtins ? warn then
  builtins.warn message value
else
  builtins.trace "warning: ${message}" value
