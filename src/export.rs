//! `exportImage`: an image's file system as one root-filesystem tar, with
//! no VM.
//!
//! The image is read as a base ([`Base::open`], every layer checked as
//! hostile input, whiteouts applied) and its [`View`] is written in order,
//! parents before children, named `./PATH` after a `./` for the root as
//! dockerTools' exportImage (`tar -C root -c .`) names them: each path
//! with the mode, owner ids and names and mtime its layer gave it; files with their data, read back from the
//! kept layer tars; symlinks, directories, devices and fifos. A hard link
//! of a layer is written as a file. Headers go through the one encoder
//! ([`crate::archive::header`]), so the same image gives the same bytes.

use std::io::{BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::archive::Owner;
use crate::archive::header::{self, Header};
use crate::base::{Base, EntryKind, Pick, View, ViewEntry};
use crate::output::AtomicFile;

/// Reads the image at `image` and writes its root file system to `out`,
/// atomically.
pub fn export(image: &Path, pick: &Pick, out: &Path) -> Result<()> {
    let mut file = AtomicFile::create(out)?;
    let base = crate::source::open_base(image, pick, true)?;
    {
        let mut w = BufWriter::with_capacity(256 * 1024, file.file());
        write_rootfs(&base, &mut w)?;
        w.flush()
            .with_context(|| format!("writing {}", out.display()))?;
    }
    file.commit()
}

/// Writes the view of `base` as a tar: every path of the view, then the
/// end-of-archive blocks.
pub fn write_rootfs(base: &Base, w: &mut impl Write) -> Result<()> {
    write_view(&base.view, |entry| base.open_file(entry), w)
}

/// Writes `view` as a tar, reading file data with `open`.
pub fn write_view<R: Read>(
    view: &View,
    mut open: impl FnMut(&ViewEntry) -> Result<R>,
    w: &mut impl Write,
) -> Result<()> {
    let zeros = [0u8; header::BLOCK as usize];
    // The root: as a layer gave it, else root's 0755 directory at the
    // library's default time.
    let root_default = ViewEntry {
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        uname: b"root".to_vec(),
        gname: b"root".to_vec(),
        mtime: 1,
        size: 0,
        link: Vec::new(),
        sha256: None,
        layer: 0,
        offset: 0,
    };
    let root = view
        .get(b"")
        .filter(|e| e.kind == EntryKind::Dir)
        .unwrap_or(&root_default);
    let entries =
        std::iter::once((Vec::new(), root)).chain(view.iter().filter(|(p, _)| !p.is_empty()));
    for (path, entry) in entries {
        let shown = String::from_utf8_lossy(&path).into_owned();
        let kind = entry.kind;
        let mut name = b"./".to_vec();
        name.extend_from_slice(&path);
        if kind == EntryKind::Dir && !path.is_empty() {
            name.push(b'/');
        }
        let owner = Owner {
            uid: entry.uid,
            gid: entry.gid,
            uname: String::from_utf8_lossy(&entry.uname).into_owned(),
            gname: String::from_utf8_lossy(&entry.gname).into_owned(),
        };
        let size = if kind == EntryKind::File {
            entry.size
        } else {
            0
        };
        let link: &[u8] = if kind == EntryKind::Symlink {
            &entry.link
        } else {
            b""
        };
        let h = Header {
            name: &name,
            kind,
            mode: entry.mode,
            size,
            link,
            mtime: entry.mtime,
            owner: &owner,
        };
        w.write_all(&header::encode(&h))
            .with_context(|| format!("writing entry {shown:?}"))?;
        if kind != EntryKind::File {
            continue;
        }
        let mut data = open(entry)
            .with_context(|| format!("reading file {shown:?} of layer {}", entry.layer + 1))?
            .take(size);
        let copied = std::io::copy(&mut data, w)
            .with_context(|| format!("copying file {shown:?} of layer {}", entry.layer + 1))?;
        if copied != size {
            bail!(
                "file {shown:?} of layer {}: {copied} of its {size} bytes could be read back",
                entry.layer + 1
            );
        }
        let fill = (header::padded(size) - size) as usize;
        w.write_all(&zeros[..fill])
            .with_context(|| format!("writing entry {shown:?}"))?;
    }
    w.write_all(&[0u8; 2 * header::BLOCK as usize])
        .context("writing the end of the archive")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::scan::{Limits, read_layer};

    /// `(name, type, data, link, mode, uid)`.
    type Spec<'a> = (&'a str, tar::EntryType, &'a [u8], &'a str, u32, u64);

    /// A layer tar written with the `tar` crate.
    fn layer(entries: &[Spec]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, ty, data, link, mode, uid) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_mode(*mode);
            h.set_uid(*uid);
            h.set_gid(*uid);
            h.set_username(if *uid == 0 { "root" } else { "app" })
                .unwrap();
            h.set_groupname(if *uid == 0 { "root" } else { "app" })
                .unwrap();
            h.set_mtime(1000 + *uid);
            h.set_size(data.len() as u64);
            if ty.is_character_special() {
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
            }
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_flatten_into_one_tar_with_their_metadata() {
        use tar::EntryType::*;
        let layers = [
            layer(&[
                ("etc/", Directory, b"", "", 0o755, 0),
                ("etc/passwd", Regular, b"root:x:0:0\n", "", 0o644, 0),
                ("etc/gone", Regular, b"gone", "", 0o644, 0),
                ("dev/", Directory, b"", "", 0o755, 0),
                ("dev/null", Char, b"", "", 0o666, 0),
            ]),
            layer(&[
                ("etc/.wh.gone", Regular, b"", "", 0o644, 0),
                ("home/", Directory, b"", "", 0o700, 1000),
                ("home/app", Regular, b"data", "", 0o4755, 1000),
                ("home/copy", Link, b"", "home/app", 0o600, 1000),
                ("home/ln", Symlink, b"", "app", 0o777, 1000),
                ("run-fifo", Fifo, b"", "", 0o600, 0),
            ]),
        ];
        let mut view = View::default();
        for (i, l) in layers.iter().enumerate() {
            view.apply(read_layer(
                "layer",
                i,
                &l[..],
                None,
                Limits::default(),
                None,
            ))
            .unwrap();
        }
        let open = |e: &ViewEntry| -> Result<std::io::Cursor<Vec<u8>>> {
            let l = &layers[e.layer];
            Ok(std::io::Cursor::new(
                l[e.offset as usize..(e.offset + e.size) as usize].to_vec(),
            ))
        };
        let mut out = Vec::new();
        write_view(&view, open, &mut out).unwrap();
        let mut again = Vec::new();
        write_view(&view, open, &mut again).unwrap();
        assert_eq!(out, again);

        let mut archive = tar::Archive::new(&out[..]);
        let mut got = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let h = e.header();
            got.push(format!(
                "{} {} {:o} {}:{} {}:{} {} {:?} {}",
                String::from_utf8_lossy(&e.path_bytes()),
                h.entry_type().as_byte() as char,
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.username().unwrap().unwrap(),
                h.groupname().unwrap().unwrap(),
                h.mtime().unwrap(),
                String::from_utf8_lossy(&data),
                e.link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default(),
            ));
        }
        assert_eq!(
            got,
            [
                "./ 5 755 0:0 root:root 1 \"\" ",
                "./dev/ 5 755 0:0 root:root 1000 \"\" ",
                "./dev/null 3 666 0:0 root:root 1000 \"\" ",
                "./etc/ 5 755 0:0 root:root 1000 \"\" ",
                "./etc/passwd 0 644 0:0 root:root 1000 \"root:x:0:0\\n\" ",
                "./home/ 5 700 1000:1000 app:app 2000 \"\" ",
                "./home/app 0 4755 1000:1000 app:app 2000 \"data\" ",
                "./home/copy 0 600 1000:1000 app:app 2000 \"data\" ",
                "./home/ln 2 777 1000:1000 app:app 2000 \"\" app",
                "./run-fifo 6 600 0:0 root:root 1000 \"\" ",
            ]
        );
    }
}
