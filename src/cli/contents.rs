//! `stevedore inspect`, `sbom`, `diff` and `why`: an image read into
//! [`crate::contents`], then printed or written.

use std::io::Write;

use anyhow::{Context, Result};

use super::Command;
use super::args::FactsArgs;
use crate::closure::Graph;
use crate::contents::{self, Contents, Facts, sbom};
use crate::oci::Platform;
use crate::output::AtomicFile;

/// Runs an `Inspect`, `Sbom`, `Diff` or `Why` command.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Inspect { image, json, facts } => {
            let c = read(&image, &facts)?;
            if json {
                print(&pretty(&c)?)
            } else {
                print(c.to_text().as_bytes())
            }
        }
        Command::Sbom {
            image,
            format,
            out,
            facts,
        } => {
            let doc = sbom::write(&read(&image, &facts)?, format)?;
            match out {
                Some(out) => {
                    let mut file = AtomicFile::create(&out)?;
                    file.file()
                        .write_all(&doc)
                        .with_context(|| format!("writing {}", out.display()))?;
                    file.commit()
                }
                None => print(&doc),
            }
        }
        Command::Diff {
            old,
            new,
            json,
            facts,
        } => {
            let d = contents::diff(&read(&old, &facts)?, &read(&new, &facts)?);
            if json {
                print(&pretty(&d)?)
            } else {
                print(d.to_text().as_bytes())
            }
        }
        Command::Why { image, path, facts } => {
            let chain = contents::why(&read(&image, &facts)?, &path)?;
            let mut text = String::new();
            for (i, p) in chain.iter().enumerate() {
                let note = if i == 0 { "  (root)" } else { "" };
                text.push_str(&format!(
                    "{}{}{note}\n",
                    "  ".repeat(i),
                    crate::terminal::escape(p)
                ));
            }
            print(text.as_bytes())
        }
        _ => unreachable!("only inspect, sbom, diff and why come here"),
    }
}

/// `push --sbom`: the image, then its CycloneDX SBOM as an artifact
/// that refers to it; what the artifact became is said on standard
/// error, so the pushed image stays the last line of standard output.
pub fn push_with_sbom(
    source: &std::path::Path,
    dest: &crate::oci::Reference,
    conn: &crate::registry::Connection,
    opts: &crate::push::PushOptions,
) -> Result<String> {
    let (reference, subject) = crate::push::push_subject(source, dest, conn, opts)?;
    let facts = Facts {
        host_store: true,
        ..Default::default()
    };
    let doc = sbom::write(
        &contents::open(source, &facts)?,
        sbom::SbomFormat::Cyclonedx,
    )?;
    let (artifact, referred) = crate::push::push_referrer(
        dest,
        &subject,
        &doc,
        crate::oci::media_type::CYCLONEDX_JSON,
        "sbom.cdx.json",
        conn,
    )
    .context("pushing the SBOM")?;
    let how = match referred {
        crate::push::Referred::ReferrersApi => "found through the referrers API".to_owned(),
        crate::push::Referred::FallbackTag(tag) => format!("listed under the tag {tag}"),
    };
    eprintln!("sbom: {artifact} ({how})");
    Ok(reference)
}

/// Reads `image` with what `facts` adds; the host's store may be asked.
fn read(image: &str, facts: &FactsArgs) -> Result<Contents> {
    let graph = facts.graph.as_deref().map(Graph::load).transpose()?;
    let f = Facts {
        graph: graph.as_ref(),
        meta: Default::default(),
        host_store: true,
    };
    let conn = facts.connection.connection()?;
    if facts.layers && image.starts_with("docker://") {
        // The whole image, pulled as `pull` does, then read as on disk.
        let reference = crate::oci::Reference::parse("image", image)?;
        let scratch = tempfile::tempdir().context("a scratch directory for the pull")?;
        let dir = scratch.path().join("image");
        let opts = crate::pull::PullOptions {
            format: crate::pull::PullFormat::OciDir,
            platform: Platform::host(),
            tag: Some(format!("{}:latest", reference.name())),
            jobs: 3,
        };
        crate::pull::pull(&reference, &dir, &conn, &opts)?;
        let mut c = contents::open(&dir, &f)?;
        c.image = image.to_owned();
        c.names = match reference.target {
            crate::oci::Target::Tag(_) => {
                vec![format!("{}:{}", reference.name(), reference.target_str())]
            }
            crate::oci::Target::Digest(_) => Vec::new(),
        };
        return Ok(c);
    }
    contents::open_any(image, &f, &conn, &Platform::host())
}

fn pretty<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn print(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("writing to standard output")
}
