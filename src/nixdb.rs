//! The Nix database of an image: `/nix/var/nix/db/db.sqlite` in the schema
//! that Nix 2.x opens without migrating, its `schema` file, and the gcroots
//! under `/nix/var/nix/gcroots/docker/` that keep the image's contents alive.
//!
//! Everything comes from the closure graph Nix exported ([`crate::closure`]):
//! narHash and narSize are already there, so no store path is read or hashed
//! again. The database is written with SQLite (`rusqlite`, bundled, so its
//! version and file format are fixed by `Cargo.lock`) in one transaction, in
//! path order, with a fixed page size, no write-ahead log, and a final
//! `VACUUM`: the same registration gives the same bytes on every machine.
//!
//! Nix's own `nix-store --load-db` would need a Nix at build time and writes
//! registration times of its own; writing the tables directly needs neither.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use rusqlite::{Connection, params};

use crate::closure::Graph;
use crate::spec::{self, EntryMetadata, Metadata};

/// The store directory the database describes.
pub const STORE_DIR: &str = "/nix/store";

/// The schema version Nix 2.x expects in `/nix/var/nix/db/schema` (Nix
/// writes the number without a newline).
pub const SCHEMA_VERSION: &str = "10";

/// The database, the schema file and the gcroots, relative to the root.
pub const DB_DIR: &str = "nix/var/nix/db";
pub const GCROOTS_DIR: &str = "nix/var/nix/gcroots/docker";

/// The tables of Nix's local store (schema version 10), as Nix 2.x creates
/// them: valid paths, their references, and the outputs of registered
/// derivations. Nix's queries and its garbage collector rely on the column
/// names and the cascades.
const SCHEMA_TABLES: &str = "
CREATE TABLE ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer,
    sigs             text,
    ca               text
);
CREATE TABLE Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);
CREATE TABLE DerivationOutputs (
    drv  integer not null,
    id   text not null,
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);
";

/// Its indices, and the trigger that removes a path's reference to itself
/// before the path is deleted (the reference would block the deletion).
const SCHEMA_INDICES: &str = "
CREATE INDEX IndexReferrer ON Refs(referrer);
CREATE INDEX IndexReference ON Refs(reference);
CREATE TRIGGER DeleteSelfRefs BEFORE DELETE ON ValidPaths
  BEGIN
    DELETE FROM Refs WHERE referrer = old.id AND reference = old.id;
  END;
CREATE INDEX IndexDerivationOutputs ON DerivationOutputs(path);
";

/// One valid path as Nix records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidPath {
    pub path: String,
    /// `sha256:<base16>`, the form of the `hash` column.
    pub hash: String,
    pub nar_size: u64,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    /// Sorted; the path itself when it refers to itself.
    pub references: Vec<String>,
    /// For a `.drv`: its outputs with a known path, `(name, path)`, sorted.
    pub drv_outputs: Vec<(String, String)>,
}

/// What is registered: the valid paths in path order, and the store paths
/// that get a gcroot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registration {
    pub paths: Vec<ValidPath>,
    pub gc_roots: Vec<String>,
}

impl Registration {
    /// The paths of `graph` less `exclude`, with gcroots for `gc_roots`
    /// (store paths, or paths inside one). Every path must have a narHash
    /// and a narSize, no kept path may refer to an excluded one, and every
    /// gcroot must be a kept path.
    pub fn from_graph(
        graph: &Graph,
        exclude: &BTreeSet<String>,
        gc_roots: &[String],
    ) -> Result<Registration> {
        let mut paths = Vec::new();
        for (path, info) in graph.iter().filter(|(p, _)| !exclude.contains(*p)) {
            store_path_name(path)
                .with_context(|| format!("store path {path} is not in {STORE_DIR}"))?;
            if let Some(r) = info.references.iter().find(|r| exclude.contains(*r)) {
                bail!("store path {path} refers to {r}, which is left out of the image");
            }
            let nar_hash = info
                .nar_hash
                .as_deref()
                .with_context(|| format!("store path {path} has no narHash in the graph"))?;
            let hash = db_hash(nar_hash)
                .map_err(|e| anyhow::anyhow!("store path {path}: narHash {nar_hash:?}: {e}"))?;
            let nar_size = info
                .nar_size
                .with_context(|| format!("store path {path} has no narSize in the graph"))?;
            let mut references: Vec<String> = info.references.iter().cloned().collect();
            if info.refers_to_itself {
                references.push(path.to_owned());
                references.sort();
            }
            if let Some(deriver) = &info.deriver {
                store_path_name(deriver).with_context(|| {
                    format!("store path {path}: deriver {deriver} is not in {STORE_DIR}")
                })?;
            }
            let drv_outputs = if path.ends_with(".drv") {
                derivation_outputs(Path::new(path))
                    .with_context(|| format!("registering the outputs of derivation {path}"))?
            } else {
                Vec::new()
            };
            paths.push(ValidPath {
                path: path.to_owned(),
                hash,
                nar_size,
                deriver: info.deriver.clone(),
                ca: info.ca.clone(),
                references,
                drv_outputs,
            });
        }
        let mut roots = BTreeSet::new();
        for root in gc_roots {
            let rest = root
                .strip_prefix(STORE_DIR)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or_default();
            let name = rest.split('/').next().unwrap_or_default();
            let store_path = format!("{STORE_DIR}/{name}");
            if name.is_empty() || !graph.contains(&store_path) || exclude.contains(&store_path) {
                bail!("gc root {root} is not a store path of the image");
            }
            roots.insert(store_path);
        }
        Ok(Registration {
            paths,
            gc_roots: roots.into_iter().collect(),
        })
    }

    /// Adds the paths a base image's database registers, so that one
    /// database holds the base's paths and the new ones. A path in both
    /// keeps the new registration (the same path has the same content).
    pub fn add_base(&mut self, base: Vec<ValidPath>) {
        let mut all: BTreeMap<String, ValidPath> =
            base.into_iter().map(|p| (p.path.clone(), p)).collect();
        for p in std::mem::take(&mut self.paths) {
            all.insert(p.path.clone(), p);
        }
        self.paths = all.into_values().collect();
    }

    /// Reads the valid paths of an existing Nix database (schema 10).
    pub fn read_db(file: &Path) -> Result<Vec<ValidPath>> {
        let what = || format!("reading Nix database {}", file.display());
        let db = Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(what)?;
        let mut by_id: BTreeMap<i64, ValidPath> = BTreeMap::new();
        let mut rows = db
            .prepare("SELECT id, path, hash, deriver, narSize, ca FROM ValidPaths")
            .with_context(what)?;
        let found = rows
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    ValidPath {
                        path: r.get(1)?,
                        hash: r.get(2)?,
                        deriver: r.get(3)?,
                        nar_size: r.get::<_, Option<i64>>(4)?.unwrap_or(0).max(0) as u64,
                        ca: r.get(5)?,
                        references: Vec::new(),
                        drv_outputs: Vec::new(),
                    },
                ))
            })
            .with_context(what)?;
        for row in found {
            let (id, p) = row.with_context(what)?;
            by_id.insert(id, p);
        }
        let paths: BTreeMap<i64, String> =
            by_id.iter().map(|(id, p)| (*id, p.path.clone())).collect();
        let mut refs = db
            .prepare("SELECT referrer, reference FROM Refs")
            .with_context(what)?;
        for row in refs
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .with_context(what)?
        {
            let (from, to) = row.with_context(what)?;
            let (Some(to), Some(p)) = (paths.get(&to), by_id.get_mut(&from)) else {
                bail!("{}: a reference names a path that is not valid", what());
            };
            p.references.push(to.clone());
        }
        let mut outputs = db
            .prepare("SELECT drv, id, path FROM DerivationOutputs")
            .with_context(what)?;
        for row in outputs
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .with_context(what)?
        {
            let (drv, name, out) = row.with_context(what)?;
            if let Some(p) = by_id.get_mut(&drv) {
                p.drv_outputs.push((name, out));
            }
        }
        let mut out: Vec<ValidPath> = by_id.into_values().collect();
        for p in &mut out {
            p.references.sort();
            p.drv_outputs.sort();
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Writes the database to `file`, which must not exist or be empty.
    /// Every path gets `registration_time` (seconds since the epoch).
    pub fn write_db(&self, file: &Path, registration_time: u64) -> Result<()> {
        let time = i64::try_from(registration_time)
            .context("the registration time does not fit the database")?;
        let what = || format!("writing Nix database {}", file.display());
        let mut db = Connection::open(file).with_context(what)?;
        // The page size before the first table; no journal while writing a
        // new file that is renamed into place only when complete, and no WAL
        // (its mode is recorded in the file header; Nix switches to it when
        // it opens the database for writing).
        // The whole database fits the page cache until it is written once.
        db.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
             PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -262144; PRAGMA temp_store = MEMORY;",
        )
        .with_context(what)?;
        let tx = db.transaction().with_context(what)?;
        tx.execute_batch(SCHEMA_TABLES).with_context(what)?;
        {
            // Lookups only: the ids follow the path order of `self.paths`.
            let ids: std::collections::HashMap<&str, i64> = self
                .paths
                .iter()
                .enumerate()
                .map(|(i, p)| (p.path.as_str(), i as i64 + 1))
                .collect();
            let id_of = |path: &str| ids.get(path).copied().ok_or(());
            let mut insert_path = tx
                .prepare(
                    "INSERT INTO ValidPaths (id, path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL, ?7)",
                )
                .with_context(what)?;
            for (i, p) in self.paths.iter().enumerate() {
                let size = i64::try_from(p.nar_size)
                    .with_context(|| format!("store path {}: narSize is too large", p.path))?;
                insert_path
                    .execute(params![
                        i as i64 + 1,
                        p.path,
                        p.hash,
                        time,
                        p.deriver,
                        size,
                        p.ca
                    ])
                    .with_context(what)?;
            }
            let mut insert_ref = tx
                .prepare("INSERT INTO Refs (referrer, reference) VALUES (?1, ?2)")
                .with_context(what)?;
            let mut insert_output = tx
                .prepare("INSERT INTO DerivationOutputs (drv, id, path) VALUES (?1, ?2, ?3)")
                .with_context(what)?;
            for (i, p) in self.paths.iter().enumerate() {
                let referrer = i as i64 + 1;
                for r in &p.references {
                    let reference = id_of(r).map_err(|_| {
                        anyhow::anyhow!(
                            "store path {} refers to {r}, which is not registered",
                            p.path
                        )
                    })?;
                    insert_ref
                        .execute(params![referrer, reference])
                        .with_context(what)?;
                }
                for (name, out) in &p.drv_outputs {
                    insert_output
                        .execute(params![referrer, name, out])
                        .with_context(what)?;
                }
            }
        }
        // Indices built once over sorted rows, not row by row.
        tx.execute_batch(SCHEMA_INDICES).with_context(what)?;
        tx.commit().with_context(what)?;
        // Rebuilt in key order, with no free pages.
        db.execute_batch("VACUUM").with_context(what)?;
        db.close().map_err(|(_, e)| e).with_context(what)?;
        Ok(())
    }

    /// Writes `nix/var/nix/db/{db.sqlite,schema}` and the gcroots below
    /// `root`, a new directory, with an empty store directory that carries
    /// its owner in an image. Directories get mode 0755, files 0644.
    pub fn write_tree(&self, root: &Path, registration_time: u64) -> Result<()> {
        let db_dir = root.join(DB_DIR);
        let gc_dir = root.join(GCROOTS_DIR);
        let store_dir = root.join(&STORE_DIR[1..]);
        for dir in [&db_dir, &gc_dir, &store_dir] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        self.write_db(&db_dir.join("db.sqlite"), registration_time)?;
        let schema = db_dir.join("schema");
        fs::write(&schema, SCHEMA_VERSION)
            .with_context(|| format!("writing {}", schema.display()))?;
        for root in &self.gc_roots {
            let link = gc_dir.join(store_path_name(root).expect("checked"));
            std::os::unix::fs::symlink(root, &link)
                .with_context(|| format!("creating {}", link.display()))?;
        }
        for dir in [
            "nix",
            "nix/store",
            "nix/var",
            "nix/var/nix",
            DB_DIR,
            "nix/var/nix/gcroots",
            GCROOTS_DIR,
        ] {
            set_modes(&root.join(dir))?;
        }
        Ok(())
    }

    /// The modes and owners of [`Registration::write_tree`]'s entries in an
    /// image: `/nix` and `/nix/var` root's; the store directory, and
    /// `/nix/var/nix` and everything below it, `uid`'s and `gid`'s, so that
    /// Nix can run as that user.
    pub fn tree_metadata(&self, uid: u64, gid: u64) -> Metadata {
        let dir = |uid, gid| EntryMetadata {
            mode: 0o755,
            uid,
            gid,
        };
        let mut entries = std::collections::BTreeMap::new();
        entries.insert("nix".to_owned(), dir(0, 0));
        // A Nix that runs as the owner adds paths to the store directory.
        entries.insert(STORE_DIR[1..].to_owned(), dir(uid, gid));
        entries.insert("nix/var".to_owned(), dir(0, 0));
        for d in ["nix/var/nix", DB_DIR, "nix/var/nix/gcroots", GCROOTS_DIR] {
            entries.insert(d.to_owned(), dir(uid, gid));
        }
        for f in ["db.sqlite", "schema"] {
            entries.insert(
                format!("{DB_DIR}/{f}"),
                EntryMetadata {
                    mode: 0o644,
                    uid,
                    gid,
                },
            );
        }
        for root in &self.gc_roots {
            entries.insert(
                format!("{GCROOTS_DIR}/{}", store_path_name(root).expect("checked")),
                EntryMetadata {
                    mode: 0o777,
                    uid,
                    gid,
                },
            );
        }
        Metadata {
            version: spec::VERSION,
            entries,
        }
    }

    /// Writes the database, schema file and gcroots into `root`, an existing
    /// directory that plays `/`: `stevedore nix-db`. Fails before writing
    /// anything when `root` already has a database or a gcroot of another
    /// target; files appear under their names only when complete.
    pub fn write_into_root(&self, root: &Path, registration_time: u64) -> Result<()> {
        if !root.is_dir() {
            bail!("root {} is not a directory", root.display());
        }
        let db_dir = root.join(DB_DIR);
        let gc_dir = root.join(GCROOTS_DIR);
        let db_file = db_dir.join("db.sqlite");
        if fs::symlink_metadata(&db_file).is_ok() {
            bail!(
                "{} already exists; nix-db writes a new database, so remove it or choose another root",
                db_file.display()
            );
        }
        let schema = db_dir.join("schema");
        if let Ok(text) = fs::read(&schema)
            && text != SCHEMA_VERSION.as_bytes()
        {
            bail!(
                "{} holds another schema version; remove it or choose another root",
                schema.display()
            );
        }
        let mut links = Vec::new();
        for target in &self.gc_roots {
            let link = gc_dir.join(store_path_name(target).expect("checked"));
            match fs::read_link(&link) {
                Ok(existing) if existing == Path::new(target) => {}
                Ok(_) | Err(_) if fs::symlink_metadata(&link).is_ok() => bail!(
                    "{} already exists and does not link to {target}",
                    link.display()
                ),
                _ => links.push((link, target)),
            }
        }

        let mut created = Created::default();
        created.dirs(&db_dir)?;
        created.dirs(&gc_dir)?;
        let tmp_db = tempfile::Builder::new()
            .prefix(".db.sqlite.partial-")
            .tempfile_in(&db_dir)
            .with_context(|| format!("creating a temporary file in {}", db_dir.display()))?;
        self.write_db(tmp_db.path(), registration_time)?;
        fs::set_permissions(tmp_db.path(), fs::Permissions::from_mode(0o644))
            .with_context(|| format!("writing {}", db_file.display()))?;
        let mut tmp_schema = None;
        if fs::symlink_metadata(&schema).is_err() {
            let tmp = tempfile::Builder::new()
                .prefix(".schema.partial-")
                .tempfile_in(&db_dir)
                .with_context(|| format!("creating a temporary file in {}", db_dir.display()))?;
            fs::write(tmp.path(), SCHEMA_VERSION)
                .and_then(|()| fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)))
                .with_context(|| format!("writing {}", schema.display()))?;
            tmp_schema = Some(tmp);
        }
        for (link, target) in &links {
            std::os::unix::fs::symlink(target, link)
                .with_context(|| format!("creating {}", link.display()))?;
            created.files.push(link.clone());
        }
        if let Some(tmp) = tmp_schema {
            tmp.persist(&schema)
                .map_err(|e| e.error)
                .with_context(|| format!("writing {}", schema.display()))?;
            created.files.push(schema);
        }
        tmp_db
            .persist(&db_file)
            .map_err(|e| e.error)
            .with_context(|| format!("writing {}", db_file.display()))?;
        created.keep();
        Ok(())
    }
}

/// What [`Registration::write_into_root`] made, removed again unless kept.
#[derive(Default)]
struct Created {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    kept: bool,
}

impl Created {
    /// Creates `dir` and its missing parents with mode 0755.
    fn dirs(&mut self, dir: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut d = dir.to_path_buf();
        while fs::symlink_metadata(&d).is_err() {
            missing.push(d.clone());
            if !d.pop() {
                break;
            }
        }
        for d in missing.into_iter().rev() {
            fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
            self.dirs.push(d.clone());
            set_modes(&d)?;
        }
        Ok(())
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for f in self.files.iter().rev() {
            let _ = fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

fn set_modes(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// The name of a store path (`<hash>-<name>`), `None` unless `path` is a
/// direct child of the store directory.
fn store_path_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix(STORE_DIR)?.strip_prefix('/')?;
    (!name.is_empty() && !name.contains('/') && name != "." && name != "..").then_some(name)
}

/// The characters of Nix's base-32, in digit order: no `e`, `o`, `u`, `t`.
const NIX_BASE32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Nix's base-32 text of `bytes`. Nix reads the bytes as one little-endian
/// number and prints its 5-bit digits most significant first.
pub fn nix_base32_encode(bytes: &[u8]) -> String {
    let len = (bytes.len() * 8).div_ceil(5);
    (0..len)
        .rev()
        .map(|digit| {
            let bit = digit * 5;
            let (i, j) = (bit / 8, bit % 8);
            let low = u16::from(bytes[i]) >> j;
            let high = bytes.get(i + 1).map_or(0, |&b| u16::from(b) << (8 - j));
            NIX_BASE32[usize::from((low | high) & 0x1f)] as char
        })
        .collect()
}

/// The `size` bytes that Nix's base-32 `text` stands for; `None` when the
/// text has another length, a character outside the alphabet, or bits
/// beyond `size` bytes.
pub fn nix_base32_decode(text: &str, size: usize) -> Option<Vec<u8>> {
    if text.len() != (size * 8).div_ceil(5) {
        return None;
    }
    let mut out = vec![0u8; size];
    for (k, c) in text.bytes().rev().enumerate() {
        let value = NIX_BASE32.iter().position(|&d| d == c)? as u16;
        let bit = k * 5;
        let (i, j) = (bit / 8, bit % 8);
        let shifted = value << j;
        out[i] |= (shifted & 0xff) as u8;
        let carry = (shifted >> 8) as u8;
        match out.get_mut(i + 1) {
            Some(next) => *next |= carry,
            None if carry != 0 => return None,
            None => {}
        }
    }
    Some(out)
}

/// A narHash as the `hash` column holds it, `sha256:<base16>`, from the
/// forms Nix writes: `sha256:<nix-base32>` (exportReferencesGraph and
/// `nix path-info --json` of Nix 2.x), `sha256:<base16>`, and SRI
/// `sha256-<base64>` (newer Nix).
pub fn db_hash(nar_hash: &str) -> std::result::Result<String, String> {
    const SIZE: usize = 32;
    let digest = if let Some(text) = nar_hash.strip_prefix("sha256:") {
        if text.len() == 2 * SIZE {
            hex::decode(text)
                .ok()
                .filter(|_| !text.bytes().any(|b| b.is_ascii_uppercase()))
        } else {
            nix_base32_decode(text, SIZE)
        }
    } else if let Some(text) = nar_hash.strip_prefix("sha256-") {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .filter(|d| d.len() == SIZE)
    } else {
        return Err(
            "unknown hash format; expected sha256:<nix-base32>, sha256:<base16> or sha256-<base64>"
                .into(),
        );
    };
    digest
        .map(|d| format!("sha256:{}", hex::encode(d)))
        .ok_or_else(|| "not a valid SHA-256 in nix-base32, base16 or base64".into())
}

/// The outputs of the derivation file at `path` that have a path, as Nix
/// records them in `DerivationOutputs` when it registers a `.drv`: the
/// first list of the ATerm `Derive([("out","/nix/store/...","",""),...],...)`.
fn derivation_outputs(path: &Path) -> Result<Vec<(String, String)>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bad = || anyhow::anyhow!("{} is not a derivation in ATerm form", path.display());
    let mut rest = text.strip_prefix("Derive([").ok_or_else(bad)?;
    let mut outputs = Vec::new();
    while !rest.starts_with(']') {
        rest = rest.strip_prefix('(').ok_or_else(bad)?;
        let mut fields = Vec::new();
        for i in 0..4 {
            let (field, after) = aterm_string(rest).ok_or_else(bad)?;
            fields.push(field);
            rest = after
                .strip_prefix(if i == 3 { ')' } else { ',' })
                .ok_or_else(bad)?;
        }
        if !fields[1].is_empty() {
            outputs.push((fields[0].clone(), fields[1].clone()));
        }
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with(']') {
            return Err(bad());
        }
    }
    outputs.sort();
    Ok(outputs)
}

/// A quoted ATerm string at the start of `text`, unescaped, and the rest.
fn aterm_string(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 2..])),
            '\\' => out.push(match chars.next()?.1 {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                other => other,
            }),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::closure::GraphEntry;

    /// SHA-256 of the empty string, and of "hello\n" (`echo hello | sha256sum`),
    /// with their nix-base32 forms as `nix-hash --type sha256 --to-base32`
    /// prints them.
    const EMPTY_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_NIX32: &str = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    const HELLO_HEX: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    const HELLO_NIX32: &str = "00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq";

    #[test]
    fn base32_matches_nix() {
        for (hex_text, nix32) in [(EMPTY_HEX, EMPTY_NIX32), (HELLO_HEX, HELLO_NIX32)] {
            let bytes = hex::decode(hex_text).unwrap();
            assert_eq!(nix_base32_encode(&bytes), nix32);
            assert_eq!(nix_base32_decode(nix32, 32).unwrap(), bytes);
        }
        // 20 bytes (sha1 size, store path hashes): 32 characters.
        let bytes: Vec<u8> = (0..20).map(|i| i * 13 + 7).collect();
        let text = nix_base32_encode(&bytes);
        assert_eq!(text.len(), 32);
        assert_eq!(nix_base32_decode(&text, 20).unwrap(), bytes);
    }

    #[test]
    fn base32_refuses_bad_text() {
        // Wrong length, letters outside the alphabet, bits past 256.
        assert!(nix_base32_decode(&EMPTY_NIX32[1..], 32).is_none());
        assert!(nix_base32_decode(&EMPTY_NIX32.replace('0', "e"), 32).is_none());
        assert!(nix_base32_decode(&format!("z{}", &EMPTY_NIX32[1..]), 32).is_none());
        assert!(nix_base32_decode(&format!("1{}", &EMPTY_NIX32[1..]), 32).is_some());
    }

    #[test]
    fn db_hash_takes_every_form_nix_writes() {
        let want = format!("sha256:{EMPTY_HEX}");
        assert_eq!(db_hash(&format!("sha256:{EMPTY_NIX32}")).unwrap(), want);
        assert_eq!(db_hash(&format!("sha256:{EMPTY_HEX}")).unwrap(), want);
        assert_eq!(
            db_hash("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").unwrap(),
            want
        );
        for bad in [
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            EMPTY_HEX,
            "sha256:xyz",
            "sha256-AAAA",
            "",
        ] {
            assert!(db_hash(bad).is_err(), "{bad}");
        }
        assert!(
            db_hash("sha1:0000")
                .unwrap_err()
                .contains("unknown hash format")
        );
    }

    fn entry(path: &str, refs: &[&str], hash: Option<&str>, size: Option<u64>) -> GraphEntry {
        GraphEntry {
            path: path.into(),
            nar_hash: hash.map(str::to_owned),
            nar_size: size,
            references: Some(refs.iter().map(|r| r.to_string()).collect()),
            ..GraphEntry::default()
        }
    }

    const A: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app";
    const B: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib";
    const C: &str = "/nix/store/cccccccccccccccccccccccccccccccc-tree";

    fn graph(b_hash: Option<&str>, b_size: Option<u64>) -> Graph {
        let h = format!("sha256:{EMPTY_NIX32}");
        Graph::from_entries(vec![
            entry(A, &[A, B], Some(&h), Some(10)),
            entry(B, &[], b_hash, b_size),
            entry(C, &[A], Some(&h), Some(3)),
        ])
        .unwrap()
    }

    fn err(r: Result<Registration>) -> String {
        format!("{:#}", r.unwrap_err())
    }

    #[test]
    fn registration_keeps_self_references_and_leaves_out_excluded_paths() {
        let h = format!("sha256:{EMPTY_NIX32}");
        let reg = Registration::from_graph(
            &graph(Some(&h), Some(4)),
            &[C.to_owned()].into(),
            &[format!("{A}/bin/app")],
        )
        .unwrap();
        let paths: Vec<_> = reg.paths.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, [A, B]);
        assert_eq!(reg.paths[0].references, [A, B]);
        assert_eq!(reg.paths[0].hash, format!("sha256:{EMPTY_HEX}"));
        assert_eq!(reg.gc_roots, [A]);
    }

    #[test]
    fn bad_registrations_name_the_path() {
        let h = format!("sha256:{EMPTY_NIX32}");
        let none = BTreeSet::new();
        let e = err(Registration::from_graph(&graph(None, Some(4)), &none, &[]));
        assert!(e.contains(B) && e.contains("no narHash"), "{e}");
        let e = err(Registration::from_graph(&graph(Some(&h), None), &none, &[]));
        assert!(e.contains(B) && e.contains("no narSize"), "{e}");
        let e = err(Registration::from_graph(
            &graph(Some("sha512:abc"), Some(4)),
            &none,
            &[],
        ));
        assert!(e.contains(B) && e.contains("unknown hash format"), "{e}");
        let e = err(Registration::from_graph(
            &graph(Some(&h), Some(4)),
            &[B.to_owned()].into(),
            &[],
        ));
        assert!(
            e.contains(A) && e.contains(B) && e.contains("left out"),
            "{e}"
        );
        let e = err(Registration::from_graph(
            &graph(Some(&h), Some(4)),
            &[C.to_owned()].into(),
            &[C.to_owned()],
        ));
        assert!(e.contains(&format!("gc root {C}")), "{e}");
    }

    #[test]
    fn derivation_outputs_are_read_from_the_aterm() {
        let dir = tempfile::tempdir().unwrap();
        let drv = dir.path().join("x.drv");
        fs::write(
            &drv,
            r#"Derive([("dev","/nix/store/dddd-x-dev","",""),("out","/nix/store/oooo-x","",""),("ca","","r:sha256","")],[],[],"x86_64-linux","/bin/sh",["-c","echo \"hi\""],[("out","/nix/store/oooo-x")])"#,
        )
        .unwrap();
        assert_eq!(
            derivation_outputs(&drv).unwrap(),
            [
                ("dev".to_owned(), "/nix/store/dddd-x-dev".to_owned()),
                ("out".to_owned(), "/nix/store/oooo-x".to_owned())
            ]
        );
        fs::write(&drv, "Derive([(\"out\"").unwrap();
        assert!(derivation_outputs(&drv).is_err());
        assert_eq!(
            aterm_string(r#""a\"b\\c\n",x"#).unwrap(),
            ("a\"b\\c\n".into(), ",x")
        );
    }

    /// The same registration gives the same bytes; the tables hold what
    /// was registered.
    #[test]
    fn database_is_reproducible_and_holds_the_registration() {
        let h = format!("sha256:{EMPTY_NIX32}");
        let reg =
            Registration::from_graph(&graph(Some(&h), Some(4)), &BTreeSet::new(), &[]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("1.sqlite"), dir.path().join("2.sqlite"));
        reg.write_db(&one, 7).unwrap();
        reg.write_db(&two, 7).unwrap();
        assert_eq!(fs::read(&one).unwrap(), fs::read(&two).unwrap());
        let db = Connection::open(&one).unwrap();
        let rows: Vec<(i64, String, String, i64, i64)> = db
            .prepare("SELECT id, path, hash, registrationTime, narSize FROM ValidPaths ORDER BY id")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], (1, A.into(), format!("sha256:{EMPTY_HEX}"), 7, 10));
        let refs: Vec<(i64, i64)> = db
            .prepare("SELECT referrer, reference FROM Refs ORDER BY referrer, reference")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(refs, [(1, 1), (1, 2), (3, 1)]);
        let mode: String = db
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "the file is not in WAL mode");
    }
}
