# fakeNss: the least an image needs for programs that look up users,
# groups and hosts, as dockerTools.fakeNss: `etc/passwd` with root and
# nobody, `etc/group` with their groups, `etc/nsswitch.conf` (hosts from
# files, then DNS) and the empty `var/empty`, their home. More users and
# groups go between root's line and nobody's:
#
#   stevedore.fakeNss.override {
#     extraPasswdLines = [ "alice:x:1000:1000:Alice:/home/alice:/bin/sh" ];
#     extraGroupLines = [ "alice:x:1000:" ];
#   }
{
  # internal/storeTree.nix and internal/makeOverridable.nix.
  storeTree,
  makeOverridable,
}:
let
  lines =
    arg: value:
    if builtins.isList value && builtins.all builtins.isString value then
      builtins.concatStringsSep "" (map (l: "${l}\n") value)
    else
      throw "fakeNss: ${arg} must be a list of strings, one line each, such as [ \"alice:x:1000:1000::/home/alice:/bin/sh\" ]";
  known = [
    "extraPasswdLines"
    "extraGroupLines"
  ];
  fakeNss =
    args:
    let
      unknown = builtins.filter (k: !builtins.elem k known) (builtins.attrNames args);
    in
    if unknown != [ ] then
      throw "fakeNss: unknown argument ${builtins.head unknown}; fakeNss.override takes extraPasswdLines and extraGroupLines"
    else
      storeTree "fake-nss" [
        {
          type = "file";
          path = "etc/passwd";
          text = "root:x:0:0:root user:/var/empty:/bin/sh\n${lines "extraPasswdLines" (args.extraPasswdLines or [ ])}nobody:x:65534:65534:nobody:/var/empty:/bin/sh\n";
        }
        {
          type = "file";
          path = "etc/group";
          text = "root:x:0:\n${lines "extraGroupLines" (args.extraGroupLines or [ ])}nobody:x:65534:\n";
        }
        {
          type = "file";
          path = "etc/nsswitch.conf";
          text = "hosts: files dns\n";
        }
        {
          type = "directory";
          path = "var/empty";
        }
      ];
in
makeOverridable fakeNss { }
