//! How a position is laid out in the redb file, and how damage to it is noticed.
//!
//! Format 2 (this build) stores each position as `crc32 (4 bytes, little endian) ||
//! position bytes`, the checksum covering the key and then the position, so a changed
//! byte and a value moved under another key are both caught on read. The `meta` table
//! holds the format header: a magic number naming the file a Funnel store, and the
//! format version. Format 1 (no magic, no checksums) is migrated on open.

/// `FUNNELDB` as a big-endian number: the first entry of the format header.
pub(crate) const MAGIC: u64 = u64::from_be_bytes(*b"FUNNELDB");

/// The key of the magic number in the `meta` table.
pub(crate) const MAGIC_KEY: &str = "magic";

/// The key of the format version in the `meta` table.
pub(crate) const VERSION_KEY: &str = "format_version";

/// The first format, without a header magic or checksums.
pub(crate) const UNCHECKED_FORMAT: u64 = 1;

const CHECKSUM_LEN: usize = 4;

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), one table lookup per byte.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        // `i < 256`, so the cast keeps every bit.
        #[allow(clippy::cast_possible_truncation)]
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &byte in *part {
            crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

/// The stored form of `position` under `key`.
pub(crate) fn encode(key: &str, position: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKSUM_LEN + position.len());
    out.extend_from_slice(&crc32(&[key.as_bytes(), position]).to_le_bytes());
    out.extend_from_slice(position);
    out
}

/// The position stored as `stored` under `key`, or what is wrong with it.
pub(crate) fn decode<'a>(key: &str, stored: &'a [u8]) -> Result<&'a [u8], String> {
    let Some((sum, position)) = stored.split_first_chunk::<CHECKSUM_LEN>() else {
        return Err(format!(
            "the value is {} bytes, shorter than its checksum",
            stored.len()
        ));
    };
    let expected = u32::from_le_bytes(*sum);
    let actual = crc32(&[key.as_bytes(), position]);
    if expected == actual {
        Ok(position)
    } else {
        Err(format!(
            "checksum mismatch (stored {expected:08x}, computed {actual:08x})"
        ))
    }
}

/// `pipeline/connector` for a stored key, for messages.
pub(crate) fn describe(key: &str) -> String {
    match key.split_once('\u{0}') {
        Some((pipeline, connector)) => format!("pipeline {pipeline:?}, connector {connector:?}"),
        None => format!("key {key:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_the_standard_crc32() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    #[test]
    fn an_encoded_position_decodes_to_itself() {
        let stored = encode("p\u{0}src", b"42");
        assert_eq!(decode("p\u{0}src", &stored), Ok(&b"42"[..]));
    }

    #[test]
    fn any_flipped_bit_or_another_key_fails_the_checksum() {
        let stored = encode("p\u{0}src", b"position-17");
        for i in 0..stored.len() * 8 {
            let mut damaged = stored.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(decode("p\u{0}src", &damaged).is_err(), "bit {i}");
        }
        assert!(decode("q\u{0}src", &stored).is_err());
        assert!(decode("p\u{0}src", &stored[..3]).is_err());
    }
}
