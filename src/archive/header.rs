//! The one function that encodes tar headers, for layers and for the outer
//! image archives alike.
//!
//! Written by hand rather than with the `tar` crate because every byte has to
//! be known before it is written: a layer's size is computed from metadata
//! alone (so `stream` needs no second pass), and the output must not depend on
//! the host (no atime/ctime, no device numbers, no host user names). The format
//! is POSIX ustar; a value that does not fit its field (a name longer than 100
//! bytes, a link target longer than 100 bytes, a user or group name longer than
//! 32 bytes, a size, id or time too large for its octal field) goes into a PAX
//! extended header (`x`) in front of the entry, named `././@PaxHeader`, with
//! records in a fixed order. The ustar field then holds a truncated value for
//! readers that ignore PAX.

use super::Owner;
use crate::entry::EntryKind;

/// Size of a tar block.
pub const BLOCK: u64 = 512;

/// What a header says about one entry.
pub struct Header<'a> {
    /// Path inside the archive: relative, no `./`, directories end in `/`.
    pub name: &'a [u8],
    pub kind: EntryKind,
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    /// Data size; zero for directories and symlinks.
    pub size: u64,
    /// Symlink target; empty for other kinds.
    pub link: &'a [u8],
    pub mtime: u64,
    pub owner: &'a Owner,
}

/// Rounds a data size up to whole blocks.
pub fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

const NAME_LEN: usize = 100;
const OWNER_NAME_LEN: usize = 32;
/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_12: u64 = 0o77777777777;

/// Encodes the header blocks of an entry: an optional PAX header with its
/// records, then the ustar header. The entry's data (for files) follows,
/// padded with [`padded`].
pub fn encode(h: &Header) -> Vec<u8> {
    let mut records = pax_records(h);
    let mut out = Vec::with_capacity(3 * BLOCK as usize);
    if !records.is_empty() {
        let root = Owner::root();
        out.extend_from_slice(&ustar(
            &Header {
                name: b"././@PaxHeader",
                kind: EntryKind::File,
                mode: 0o644,
                size: records.len() as u64,
                link: b"",
                mtime: h.mtime,
                owner: &root,
            },
            b'x',
        ));
        let data_len = padded(records.len() as u64) as usize;
        records.resize(data_len, 0);
        out.extend_from_slice(&records);
    }
    let typeflag = match h.kind {
        EntryKind::File => b'0',
        EntryKind::Dir => b'5',
        EntryKind::Symlink => b'2',
        EntryKind::CharDevice { .. } => b'3',
        EntryKind::BlockDevice { .. } => b'4',
        EntryKind::Fifo => b'6',
    };
    out.extend_from_slice(&ustar(h, typeflag));
    out
}

/// The PAX records of the values that do not fit their ustar fields;
/// empty (and not allocated) when all fit.
fn pax_records(h: &Header) -> Vec<u8> {
    let mut records = Vec::new();
    if h.name.len() > NAME_LEN {
        pax_record(&mut records, "path", h.name);
    }
    if h.link.len() > NAME_LEN {
        pax_record(&mut records, "linkpath", h.link);
    }
    if h.size > MAX_OCTAL_12 {
        pax_record(&mut records, "size", h.size.to_string().as_bytes());
    }
    if h.owner.uid > MAX_OCTAL_8 {
        pax_record(&mut records, "uid", h.owner.uid.to_string().as_bytes());
    }
    if h.owner.gid > MAX_OCTAL_8 {
        pax_record(&mut records, "gid", h.owner.gid.to_string().as_bytes());
    }
    if h.owner.uname.len() > OWNER_NAME_LEN {
        pax_record(&mut records, "uname", h.owner.uname.as_bytes());
    }
    if h.owner.gname.len() > OWNER_NAME_LEN {
        pax_record(&mut records, "gname", h.owner.gname.as_bytes());
    }
    if h.mtime > MAX_OCTAL_12 {
        pax_record(&mut records, "mtime", h.mtime.to_string().as_bytes());
    }
    records
}

/// The number of bytes [`encode`] gives for this header, plus the padded
/// data, without encoding it.
pub fn entry_len(h: &Header) -> u64 {
    let records = pax_records(h).len() as u64;
    let pax = if records == 0 {
        0
    } else {
        BLOCK + padded(records)
    };
    pax + BLOCK + padded(h.size)
}

/// One ustar header block; values too large for a field are clamped (the
/// caller has put the real value into a PAX record).
fn ustar(h: &Header, typeflag: u8) -> [u8; BLOCK as usize] {
    let mut b = [0u8; BLOCK as usize];
    put_bytes(&mut b[0..100], h.name);
    put_octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    put_octal(&mut b[108..116], h.owner.uid.min(MAX_OCTAL_8));
    put_octal(&mut b[116..124], h.owner.gid.min(MAX_OCTAL_8));
    put_octal(&mut b[124..136], h.size.min(MAX_OCTAL_12));
    put_octal(&mut b[136..148], h.mtime.min(MAX_OCTAL_12));
    b[156] = typeflag;
    put_bytes(&mut b[157..257], h.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    put_bytes(&mut b[265..297], h.owner.uname.as_bytes());
    put_bytes(&mut b[297..329], h.owner.gname.as_bytes());
    let (major, minor) = match h.kind {
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            (u64::from(major), u64::from(minor))
        }
        _ => (0, 0),
    };
    // Linux device numbers (12-bit major, 20-bit minor) always fit.
    put_octal(&mut b[329..337], major.min(MAX_OCTAL_8));
    put_octal(&mut b[337..345], minor.min(MAX_OCTAL_8));
    // The checksum is computed with its own field read as spaces.
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    put_octal(&mut b[148..155], u64::from(sum));
    b
}

/// Copies as much of `value` as fits; the rest of the field stays NUL.
fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Writes `value` as zero-padded octal followed by a NUL; digits that do
/// not fit are dropped (callers clamp first). By hand: this runs a few
/// times per entry, where `format!` cost a tenth of a stream of small files.
fn put_octal(field: &mut [u8], value: u64) {
    let (last, digits) = field.split_last_mut().expect("octal fields are not empty");
    *last = 0;
    let mut v = value;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v & 7) as u8;
        v >>= 3;
    }
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts
/// the whole record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(name: &'a [u8], link: &'a [u8], owner: &'a Owner) -> Header<'a> {
        Header {
            name,
            kind: if link.is_empty() {
                EntryKind::File
            } else {
                EntryKind::Symlink
            },
            mode: 0o444,
            size: 0,
            link,
            mtime: 1,
            owner,
        }
    }

    #[test]
    fn short_names_need_one_block() {
        let root = Owner::root();
        let h = header(b"nix/store/x", b"", &root);
        assert_eq!(encode(&h).len(), 512);
    }

    #[test]
    fn long_names_go_into_pax_records_that_tar_reads() {
        let root = Owner::root();
        let name = format!("nix/store/{}", "a".repeat(300));
        let link = "b".repeat(150);
        let h = header(name.as_bytes(), link.as_bytes(), &root);
        let mut bytes = encode(&h);
        assert_eq!(bytes.len() as u64, entry_len(&h));
        bytes.extend_from_slice(&[0; 1024]);
        let mut archive = tar::Archive::new(&bytes[..]);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path_bytes().as_ref(), name.as_bytes());
        assert_eq!(entry.link_name_bytes().unwrap().as_ref(), link.as_bytes());
    }

    #[test]
    fn devices_and_fifos_keep_their_numbers() {
        let root = Owner::root();
        let mut bytes = Vec::new();
        for (name, kind) in [
            (
                &b"dev/null"[..],
                EntryKind::CharDevice { major: 1, minor: 3 },
            ),
            (b"dev/sda", EntryKind::BlockDevice { major: 8, minor: 0 }),
            (b"run/fifo", EntryKind::Fifo),
        ] {
            bytes.extend_from_slice(&encode(&Header {
                name,
                kind,
                mode: 0o666,
                size: 0,
                link: b"",
                mtime: 1,
                owner: &root,
            }));
        }
        bytes.extend_from_slice(&[0; 1024]);
        let mut archive = tar::Archive::new(&bytes[..]);
        let got: Vec<(u8, Option<u32>, Option<u32>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    h.entry_type().as_byte(),
                    h.device_major().unwrap(),
                    h.device_minor().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (b'3', Some(1), Some(3)),
                (b'4', Some(8), Some(0)),
                (b'6', Some(0), Some(0))
            ]
        );
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [0, 1, 80, 88, 89, 90, 991, 992, 995, 9990] {
            let mut out = Vec::new();
            pax_record(&mut out, "path", &vec![b'a'; n]);
            let (len, _) = std::str::from_utf8(&out).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "value length {n}");
        }
    }

    #[test]
    fn large_ids_and_long_owner_names_survive() {
        let owner = Owner {
            uid: 5_000_000,
            gid: 7,
            uname: "u".repeat(40),
            gname: "staff".into(),
        };
        let h = header(b"f", b"", &owner);
        let mut bytes = encode(&h);
        bytes.extend_from_slice(&[0; 1024]);
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let pax: Vec<(String, String)> = entry
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.key().unwrap().to_owned(), e.value().unwrap().to_owned())
            })
            .collect();
        assert!(pax.contains(&("uid".into(), "5000000".into())));
        assert!(pax.contains(&("uname".into(), "u".repeat(40))));
        assert_eq!(entry.header().gid().unwrap(), 7);
    }

    #[test]
    fn octal_fields_are_zero_padded_and_end_in_a_nul() {
        for (width, value) in [
            (8, 0),
            (8, 0o644),
            (8, MAX_OCTAL_8),
            (12, 1),
            (12, MAX_OCTAL_12),
        ] {
            let mut field = vec![b'x'; width];
            put_octal(&mut field, value);
            let want = format!("{value:0w$o}\0", w = width - 1);
            assert_eq!(field, want.as_bytes());
        }
    }

    #[test]
    fn entry_len_is_what_encode_writes_and_the_padded_data() {
        let root = Owner::root();
        let big = Owner {
            uid: 5_000_000,
            gid: 5_000_000,
            uname: "u".repeat(40),
            gname: "g".repeat(40),
        };
        let long = vec![b'n'; 150];
        for owner in [&root, &big] {
            for (name, link) in [(&b"f"[..], &b""[..]), (&long, &b""[..]), (&b"l"[..], &long)] {
                for (size, mtime) in [
                    (0, 1),
                    (1, 1),
                    (513, MAX_OCTAL_12 + 1),
                    (MAX_OCTAL_12 + 1, 1),
                ] {
                    let mut h = header(name, link, owner);
                    h.size = size;
                    h.mtime = mtime;
                    assert_eq!(entry_len(&h), encode(&h).len() as u64 + padded(size));
                }
            }
        }
    }
}
