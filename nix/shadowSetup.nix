# shadowSetup: shell commands for buildImage's runAsRoot that put the
# library's shadow on PATH and make what its tools (useradd, groupadd,
# passwd, ...) need and the image lacks: /etc/passwd and /etc/shadow
# with root, /etc/group and /etc/gshadow with root's group, a PAM
# fallback in /etc/pam.d/other and an empty /etc/login.defs. A file the
# image has already is left as it is. As dockerTools.shadowSetup:
#
#   runAsRoot = ''
#     ${stevedore.shadowSetup}
#     groupadd -r redis
#     useradd -r -g redis redis
#   '';
#
# Root's login shell is the library's `shell`. The commands are POSIX sh
# and need `mkdir` on the script's PATH (the image's /bin or /usr/bin).
{
  # internal/libraryPackage.nix.
  libraryPackage,
  # The library's shadow and shell arguments.
  shadow,
  shell,
}:
''
  export PATH=${libraryPackage "shadowSetup" "shadow" shadow}/bin:$PATH
  mkdir -p /etc/pam.d
  if [ ! -f /etc/passwd ]; then
    echo "root:x:0:0::/root:${shell}" > /etc/passwd
    echo "root:!x:::::::" > /etc/shadow
  fi
  if [ ! -f /etc/group ]; then
    echo "root:x:0:" > /etc/group
    echo "root:x::" > /etc/gshadow
  fi
  if [ ! -f /etc/pam.d/other ]; then
    printf '%s\n' \
      'account sufficient pam_unix.so' \
      'auth sufficient pam_rootok.so' \
      'password requisite pam_unix.so nullok yescrypt' \
      'session required pam_unix.so' > /etc/pam.d/other
  fi
  if [ ! -f /etc/login.defs ]; then
    : > /etc/login.defs
  fi
''
