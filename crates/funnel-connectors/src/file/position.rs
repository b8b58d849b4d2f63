//! The file source's positions: which file (device, inode and a fingerprint of its first
//! bytes), how many files were started before it, and the byte offset in it.
//!
//! Text form: `f1:{seq}:{offset}:{dev}:{ino}:{fingerprint length}:{fingerprint hash}`,
//! all in lowercase hexadecimal, `seq` and `offset` as 16 digits so that positions
//! compare byte by byte in read order (and after the bare decimal offsets of earlier
//! versions, which are still read: `"6"` is offset 6 of the file at `path`).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use bytes::{BufMut, Bytes, BytesMut};

/// A hash of the first bytes of a file, and how many bytes it covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    len: u64,
    hash: u64,
}

impl Fingerprint {
    /// Bytes at the start of a file that its fingerprint covers, at most.
    pub(crate) const LEN: usize = 1024;

    /// The fingerprint of `head` (FNV-1a, 64 bits: stable across builds, unlike the
    /// standard library's hasher).
    pub(crate) fn of(head: &[u8]) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &byte in head {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            len: head.len() as u64,
            hash,
        }
    }
}

/// Which file a position is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) fingerprint: Fingerprint,
}

impl FileId {
    /// Whether the file with `meta` whose first bytes are `head` is this file: same
    /// device and inode, and the same first bytes (an inode can be reused).
    pub(crate) fn matches(&self, meta: &Metadata, head: &[u8]) -> bool {
        (meta.dev(), meta.ino()) == (self.dev, self.ino)
            && usize::try_from(self.fingerprint.len)
                .ok()
                .and_then(|len| head.get(..len))
                .is_some_and(|head| Fingerprint::of(head) == self.fingerprint)
    }
}

/// A decoded position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FilePosition {
    /// Files started before this one (rotations, truncations).
    pub(crate) seq: u64,
    /// Offset just after the line.
    pub(crate) offset: u64,
    /// The file; `None` for a bare offset written by an earlier version.
    pub(crate) file: Option<FileId>,
}

impl FilePosition {
    /// Reads a position; `None` when it is not one of the file source's.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Self {
                seq: 0,
                offset: text.parse().ok()?,
                file: None,
            });
        }
        let mut fields = text.strip_prefix("f1:")?.split(':');
        let mut next = || u64::from_str_radix(fields.next()?, 16).ok();
        let position = Self {
            seq: next()?,
            offset: next()?,
            file: Some(FileId {
                dev: next()?,
                ino: next()?,
                fingerprint: Fingerprint {
                    len: next()?,
                    hash: next()?,
                },
            }),
        };
        fields.next().is_none().then_some(position)
    }

    /// The texts of the positions at `offsets` in the `seq`-th file, `file`, written into
    /// one buffer (one allocation per batch).
    pub(crate) fn texts(
        seq: u64,
        file: FileId,
        offsets: impl ExactSizeIterator<Item = u64>,
    ) -> Vec<Bytes> {
        let prefix = format!("f1:{seq:016x}:");
        let suffix = format!(
            ":{:x}:{:x}:{:x}:{:016x}",
            file.dev, file.ino, file.fingerprint.len, file.fingerprint.hash
        );
        let each = prefix.len() + 16 + suffix.len();
        let mut buf = BytesMut::with_capacity(each * offsets.len());
        for offset in offsets {
            buf.put_slice(prefix.as_bytes());
            buf.put_slice(&hex16(offset));
            buf.put_slice(suffix.as_bytes());
        }
        let mut bytes = buf.freeze();
        let mut texts = Vec::with_capacity(bytes.len() / each.max(1));
        while !bytes.is_empty() {
            texts.push(bytes.split_to(each));
        }
        texts
    }
}

/// `n` as 16 lowercase hexadecimal digits.
fn hex16(n: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0; 16];
    for (i, digit) in out.iter_mut().enumerate() {
        // A nibble: the mask keeps it below 16.
        *digit = DIGITS[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> FileId {
        FileId {
            dev: 0x803,
            ino: 12345,
            fingerprint: Fingerprint::of(b"hello\n"),
        }
    }

    #[test]
    fn positions_read_back_as_written() {
        let texts: Vec<Bytes> = FilePosition::texts(2, id(), [6u64, 12].into_iter());
        assert_eq!(texts.len(), 2);
        assert_eq!(
            FilePosition::parse(&texts[1]),
            Some(FilePosition {
                seq: 2,
                offset: 12,
                file: Some(id()),
            })
        );
    }

    #[test]
    fn positions_compare_in_read_order_and_after_bare_offsets() {
        let mut texts: Vec<Bytes> = FilePosition::texts(0, id(), [9u64, 300].into_iter());
        texts.extend(FilePosition::texts(1, id(), [2u64].into_iter()));
        assert!(texts.windows(2).all(|w| w[0] < w[1]), "{texts:?}");
        assert!(b"99999"[..] < texts[0][..]);
    }

    #[test]
    fn a_bare_offset_is_a_position_without_a_file() {
        assert_eq!(
            FilePosition::parse(b"42"),
            Some(FilePosition {
                seq: 0,
                offset: 42,
                file: None,
            })
        );
        for bad in [&b""[..], b"x", b"f1:1:2", b"f1:1:2:3:4:5:6:7", b"-1"] {
            assert_eq!(FilePosition::parse(bad), None, "{bad:?}");
        }
    }
}
