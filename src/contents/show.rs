//! `inspect`'s text for people: aligned tables, sizes in binary units, and
//! every name from the image escaped for the terminal.

use std::fmt::Write as _;

use serde_json::Value;

use super::Contents;
use crate::terminal::escape;

/// `512 B`, `1.5 KiB`, `12.0 MiB`: binary units, one decimal.
pub fn binary_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn size(n: Option<u64>) -> String {
    n.map_or_else(|| "?".to_owned(), binary_size)
}

/// Rows with columns padded to their widest cell (the last one left as
/// it is), each line indented by `indent`.
pub(super) fn table(indent: &str, rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

impl Contents {
    /// The text `inspect` prints.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut head = vec![vec!["image".to_owned(), escape(&self.image)]];
        if !self.names.is_empty() {
            head.push(vec!["names".into(), escape(&self.names.join(" "))]);
        }
        head.push(vec!["id".into(), self.id.to_string()]);
        if let Some(m) = &self.manifest {
            head.push(vec!["manifest".into(), m.to_string()]);
        }
        if let Some(c) = &self.created {
            head.push(vec!["created".into(), escape(c)]);
        }
        let platforms: Vec<String> = self
            .platforms
            .iter()
            .map(|p| escape(&p.to_string()))
            .collect();
        head.push(vec!["platform".into(), platforms.join(" ")]);
        let total: u64 = self.layers.iter().map(|l| l.compressed_size).sum();
        let unpacked: Option<u64> = self.layers.iter().map(|l| l.size).sum();
        head.push(vec![
            "size".into(),
            format!(
                "{} compressed, {} uncompressed, {}, {}",
                binary_size(total),
                size(unpacked),
                plural(self.layers.len(), "layer"),
                plural(self.store_paths.len(), "store path")
            ),
        ]);
        head.push(vec![
            "nix info".into(),
            match self.graph {
                Some(g) => format!("narHash and references from {}", g.describe()),
                None => "no narHash or references known".into(),
            },
        ]);
        out.push_str(&table("", &head));
        out.push_str("\nconfig\n");
        out.push_str(&table("  ", &config_rows(&self.config)));

        out.push('\n');
        let mut rows = vec![vec![
            "LAYER".to_owned(),
            "DIGEST".into(),
            "COMPRESSED".into(),
            "UNCOMPRESSED".into(),
            "CONTENT".into(),
        ]];
        for (i, l) in self.layers.iter().enumerate() {
            rows.push(vec![
                (i + 1).to_string(),
                l.digest.to_string(),
                binary_size(l.compressed_size),
                size(l.size),
                content_summary(l),
            ]);
        }
        out.push_str(&table("", &rows));

        for (i, l) in self.layers.iter().enumerate() {
            let _ = write!(out, "\nlayer {}  {}", i + 1, l.digest);
            // A store layer's comment only repeats the paths listed below.
            if let Some(c) = l
                .comment
                .as_deref()
                .filter(|c| !c.starts_with("store paths:"))
            {
                let mut c: String = c.chars().take(72).collect();
                if c.len() < l.comment.as_deref().map_or(0, str::len) {
                    c.push_str("...");
                }
                let _ = write!(out, "  {}", escape(&c));
            }
            out.push('\n');
            let mut rows = Vec::new();
            for p in &l.store_paths {
                rows.push(vec![size(p.size), escape(&p.path)]);
            }
            for f in &l.files {
                let shown = match &f.target {
                    Some(t) => format!("{} -> {}", escape(&f.path), escape(t)),
                    None => escape(&f.path),
                };
                let s = if f.kind == "file" {
                    binary_size(f.size)
                } else {
                    f.kind.to_owned()
                };
                rows.push(vec![s, shown]);
            }
            if rows.is_empty() {
                rows.push(vec!["(no files)".into()]);
            }
            out.push_str(&table("  ", &rows));
        }
        out
    }
}

/// `3 store paths, 2 files`.
fn content_summary(l: &super::Layer) -> String {
    let mut parts = Vec::new();
    if !l.store_paths.is_empty() {
        parts.push(plural(l.store_paths.len(), "store path"));
    }
    if !l.files.is_empty() {
        parts.push(plural(l.files.len(), "file"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

pub(super) fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The runtime config, one row per field that is set.
fn config_rows(config: &Value) -> Vec<Vec<String>> {
    let Some(c) = config.get("config").and_then(Value::as_object) else {
        return vec![vec!["(none)".into()]];
    };
    let mut rows = Vec::new();
    for (key, value) in c {
        if value.is_null() {
            continue;
        }
        let shown = match value {
            Value::String(s) => s.clone(),
            Value::Object(m)
                if m.values()
                    .all(|v| v.as_object().is_some_and(|o| o.is_empty())) =>
            {
                m.keys().cloned().collect::<Vec<_>>().join(" ")
            }
            other => other.to_string(),
        };
        rows.push(vec![escape(key), escape(&shown)]);
    }
    if rows.is_empty() {
        rows.push(vec!["(none)".into()]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary() {
        assert_eq!(binary_size(512), "512 B");
        assert_eq!(binary_size(1536), "1.5 KiB");
        assert_eq!(binary_size(5 << 20), "5.0 MiB");
    }

    #[test]
    fn tables_align_all_but_the_last_column() {
        let rows = vec![
            vec!["a".into(), "bbb".into(), "x".into()],
            vec!["cc".into(), "d".into(), "y".into()],
        ];
        assert_eq!(table("", &rows), "a   bbb  x\ncc  d    y\n");
    }
}
