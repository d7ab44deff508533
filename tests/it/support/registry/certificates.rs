//! The test CA and the certificates it signs for 127.0.0.1, made with
//! openssl, for the TLS registry and the token server.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::process::run;

/// Runs openssl, panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A self-signed RSA certificate `NAME.pem` for `subject`, its key in
/// `NAME.key`, with the openssl `extensions` given.
pub(super) fn self_signed(dir: &Path, name: &str, subject: &str, extensions: &[&str]) {
    let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &cert, "-days",
        "3650", "-subj", subject,
    ];
    args.extend_from_slice(extensions);
    openssl(dir, &args);
}

/// A CA, and a server certificate for 127.0.0.1 signed by it.
pub(super) fn make_certificates(dir: &Path) {
    self_signed(
        dir,
        "ca",
        "/CN=stevedore test CA",
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
        ],
    );
}
