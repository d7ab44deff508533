//! The record of chown calls: the owners asked for by inode, the base
//! image's owners it starts with, and the JSON the builder reads back.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The owner a chown asked for: `None` keeps the one the entry has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedOwner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl RecordedOwner {
    /// `self`, then `later` on top of it.
    pub(super) fn then(self, later: RecordedOwner) -> RecordedOwner {
        RecordedOwner {
            uid: later.uid.or(self.uid),
            gid: later.gid.or(self.gid),
        }
    }
}

/// Recorded owners by `(st_dev, st_ino)`.
pub type Owners = BTreeMap<(u64, u64), RecordedOwner>;

/// One recorded inode, as written to the record file.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Recorded {
    dev: u64,
    ino: u64,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// What the supervisor leaves: the owners, or why it gave up.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    error: Option<String>,
    owners: Vec<Recorded>,
}

pub(super) fn report_bytes(result: &Result<Owners, String>) -> Vec<u8> {
    let report = match result {
        Ok(owners) => Report {
            error: None,
            owners: owners
                .iter()
                .map(|(&(dev, ino), o)| Recorded {
                    dev,
                    ino,
                    uid: o.uid,
                    gid: o.gid,
                })
                .collect(),
        },
        Err(e) => Report {
            error: Some(e.clone()),
            owners: Vec::new(),
        },
    };
    serde_json::to_vec(&report).expect("a report serialises")
}

/// Reads what the supervisor wrote; an empty file (no supervisor, as on
/// an architecture without a filter) records nothing. An error the
/// supervisor met is returned as the error.
pub fn read_report(bytes: &[u8]) -> Result<Owners> {
    if bytes.is_empty() {
        return Ok(Owners::new());
    }
    let report: Report = serde_json::from_slice(bytes)
        .context("chown supervisor: reading the record of chown calls")?;
    if let Some(e) = report.error {
        bail!("{e}");
    }
    Ok(report
        .owners
        .into_iter()
        .map(|r| {
            (
                (r.dev, r.ino),
                RecordedOwner {
                    uid: r.uid,
                    gid: r.gid,
                },
            )
        })
        .collect())
}

/// An entry of a base image whose owner the build user could not give it
/// when the base was extracted: the supervisor starts with it recorded,
/// so that the script sees it and the layer keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseOwner {
    /// The path in the root, without a leading `/`.
    pub path: String,
    /// The inode it was extracted as: a path that `contents` replaced
    /// since is not the base's entry any more.
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
}

impl BaseOwner {
    /// The recorded owner, by inode.
    pub fn owner(&self) -> ((u64, u64), RecordedOwner) {
        (
            (self.dev, self.ino),
            RecordedOwner {
                uid: Some(self.uid),
                gid: Some(self.gid),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_calls_keep_what_they_leave_unchanged() {
        let first = RecordedOwner {
            uid: Some(1000),
            gid: Some(1000),
        };
        let chgrp = RecordedOwner {
            uid: None,
            gid: Some(50),
        };
        assert_eq!(
            first.then(chgrp),
            RecordedOwner {
                uid: Some(1000),
                gid: Some(50)
            }
        );
    }

    #[test]
    fn the_record_reads_back() {
        let mut owners = Owners::new();
        owners.insert(
            (2049, 12),
            RecordedOwner {
                uid: Some(1000),
                gid: None,
            },
        );
        owners.insert(
            (2049, 3),
            RecordedOwner {
                uid: None,
                gid: Some(0),
            },
        );
        let bytes = report_bytes(&Ok(owners.clone()));
        assert_eq!(read_report(&bytes).unwrap(), owners);
        assert_eq!(read_report(b"").unwrap(), Owners::new());
        let failed = report_bytes(&Err("chown supervisor: receiving a chown call: boom".into()));
        assert_eq!(
            format!("{:#}", read_report(&failed).unwrap_err()),
            "chown supervisor: receiving a chown call: boom"
        );
        assert!(read_report(b"{\"error\":null,\"owners\":[],\"x\":1}").is_err());
    }
}
