//! Foreign binaries for the multi-platform tests: Debian's arm64
//! `busybox-static` (downloaded by scripts/setup.sh) and qemu-user-static
//! registered in binfmt_misc, so podman runs arm64 images here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::process::run;

/// Where scripts/setup.sh keeps Debian's `busybox-static:arm64` package.
pub const ARM64_BUSYBOX_DEB: &str = "/var/cache/stevedore/busybox-static_arm64.deb";

/// A directory holding `bin/busybox`, the arm64 static busybox, unpacked
/// from the package with `dpkg-deb -x` into `dir`.
pub fn arm64_busybox_root(dir: &Path) -> PathBuf {
    assert!(
        Path::new(ARM64_BUSYBOX_DEB).exists(),
        "{ARM64_BUSYBOX_DEB} is missing: run scripts/setup.sh, which downloads busybox-static:arm64"
    );
    let unpacked = dir.join("deb");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(ARM64_BUSYBOX_DEB)
        .arg(&unpacked));
    let root = dir.join("busybox-arm64");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(unpacked.join("bin/busybox"), root.join("bin/busybox")).unwrap();
    root
}

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Makes sure the kernel runs arm64 binaries with qemu-user-static:
/// binfmt_misc mounted, and `qemu-aarch64` registered and enabled with
/// the F flag (the interpreter opened at registration, so it works inside
/// containers). Idempotent; what it cannot do fails the test with the fix.
pub fn ensure_qemu_aarch64() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let register = Path::new(BINFMT).join("register");
    if !register.exists() {
        run(Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", BINFMT]));
    }
    let entry = Path::new(BINFMT).join("qemu-aarch64");
    let enabled = |text: &str| text.lines().next() == Some("enabled");
    if !fs::read_to_string(&entry).is_ok_and(|t| enabled(&t)) {
        run(Command::new("update-binfmts").args(["--enable", "qemu-aarch64"]));
    }
    let text = fs::read_to_string(&entry).unwrap_or_default();
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .unwrap_or_default();
    assert!(
        enabled(&text) && flags.contains('F'),
        "qemu-aarch64 is not registered with the F flag in {BINFMT} (install qemu-user-static and binfmt-support: scripts/setup.sh):\n{text}"
    );
    *done = true;
}
