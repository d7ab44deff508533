//! `stevedore launch`: a launcher script the Nix library wrote
//! (`copyToRegistry`, `copyToPodman`, `copyToDockerDaemon`, and
//! `pullImageFromManifest`'s `getManifest`) run with its
//! user's arguments; and the `--repo_tag` of a stream launcher.

use std::path::Path;

use anyhow::Result;

use crate::load::{Destination, load};

/// Runs a launcher script that the Nix library wrote: `copy-to-registry
/// DEST [push options]` as a `push` command line, `copy-to-podman` and
/// `copy-to-docker-daemon` as a `load`.
pub fn run(script: &Path, args: &[String]) -> Result<()> {
    use crate::builder::launcher::Action;

    let launcher = crate::builder::launcher::read(script)?;
    let name = script
        .file_name()
        .map_or("copy".into(), |n| n.to_string_lossy().into_owned());
    match launcher.action {
        Action::Registry => {
            // A launcher with a destination of its own pushes there unless
            // the first argument names another.
            let default_dest = launcher
                .destination
                .filter(|_| args.first().is_none_or(|a| a.starts_with('-')));
            let argv = ["stevedore".to_owned(), "push".to_owned(), launcher.image]
                .into_iter()
                .chain(default_dest)
                .chain(args.iter().cloned());
            let cli = match <super::Cli as clap::Parser>::try_parse_from(argv) {
                Ok(cli) => cli,
                Err(e) if args.is_empty() => anyhow::bail!(
                    "{name}: give the destination, as in `{name} docker://registry.example.com/hello:latest` ({})",
                    e.kind()
                ),
                Err(e) => e.exit(),
            };
            super::run(cli)
        }
        Action::GetManifest => {
            if !args.is_empty() {
                anyhow::bail!(
                    "{name} takes no arguments; it prints the manifest to standard output"
                );
            }
            let src = crate::oci::Reference::parse("the image", &launcher.image)?;
            let conn = crate::registry::Connection {
                tls_verify: launcher.tls_verify.unwrap_or(true),
                ..Default::default()
            };
            let platform = launcher.platform.unwrap_or_else(crate::oci::Platform::host);
            let manifest = crate::registry::fetch::platform_manifest(&src, &conn, &platform)?;
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            out.write_all(&manifest)?;
            out.flush()?;
            Ok(())
        }
        Action::Podman | Action::DockerDaemon => {
            if !args.is_empty() {
                anyhow::bail!("{name} takes no arguments");
            }
            let into = match launcher.action {
                Action::Podman => Destination::Podman,
                _ => Destination::DockerDaemon,
            };
            load(Path::new(&launcher.image), into, None)
        }
    }
}

/// A stream launcher's `--repo_tag NAME:TAG` (dockerTools' stream script
/// option), split and checked: the tag is after the last `:` that has no
/// `/` after it, so a registry port stays in the name.
pub fn repo_tag(text: &str) -> Result<(String, String)> {
    use crate::oci::reference::{check_name, check_tag};

    let Some((name, tag)) = text.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) else {
        anyhow::bail!(
            "--repo_tag {text:?} has no tag; give NAME:TAG, such as --repo_tag hello:latest"
        );
    };
    check_name(name).map_err(|e| anyhow::anyhow!("--repo_tag: {e}"))?;
    check_tag(tag).map_err(|e| anyhow::anyhow!("--repo_tag: {e}"))?;
    Ok((name.to_owned(), tag.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::repo_tag;

    #[test]
    fn a_repo_tag_splits_at_the_tag_and_keeps_a_port_in_the_name() {
        let ok = |t: &str| repo_tag(t).unwrap();
        assert_eq!(ok("hello:dev"), ("hello".into(), "dev".into()));
        assert_eq!(
            ok("localhost:5000/team/app:1.0"),
            ("localhost:5000/team/app".into(), "1.0".into())
        );
        let err = |t: &str| format!("{:#}", repo_tag(t).unwrap_err());
        assert!(err("localhost:5000/app").contains("has no tag"));
        assert!(err("hello").contains("has no tag"));
        assert!(err("Hello:dev").contains("uppercase"));
        assert!(err("hello:-x").contains("not a valid tag"));
    }
}
