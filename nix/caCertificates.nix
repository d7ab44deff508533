# caCertificates: a store path with the CA bundle of the library's cacert
# where programs of the common distributions look for it, each a symlink
# to `etc/ssl/certs/ca-bundle.crt` of cacert, as
# dockerTools.caCertificates:
#
#   etc/ssl/certs/ca-bundle.crt        NixOS before 22.05
#   etc/ssl/certs/ca-certificates.crt  NixOS, Debian, Ubuntu, Arch, Alpine
#   etc/pki/tls/certs/ca-bundle.crt    Fedora, CentOS
{
  # internal/storeTree.nix and internal/libraryPackage.nix.
  storeTree,
  libraryPackage,
  # The library's cacert argument.
  cacert,
}:
let
  bundle = "${libraryPackage "caCertificates" "cacert" cacert}/etc/ssl/certs/ca-bundle.crt";
  link = path: {
    type = "symlink";
    inherit path;
    target = bundle;
  };
in
storeTree "ca-certificates" [
  (link "etc/ssl/certs/ca-bundle.crt")
  (link "etc/ssl/certs/ca-certificates.crt")
  (link "etc/pki/tls/certs/ca-bundle.crt")
]
