//! The part header: `version`, `part size`, `padding size` as big-endian u64 (24 bytes), plus
//! in version 2 a flags byte and 7 zero bytes (32 bytes).

use super::ErrorKind;

/// ProtoStream format version 1 (unencrypted).
pub const PROTO_STREAM_V1: u64 = 1;
/// ProtoStream format version 2 (adds flags; bit 0 = encrypted).
pub const PROTO_STREAM_V2: u64 = 2;
/// Size of a V1 part header.
pub const V1_HEADER_SIZE: usize = 24;
/// Size of a V2 part header.
pub const V2_HEADER_SIZE: usize = 32;
/// V2 flag: the payload is encrypted.
pub const FLAG_ENCRYPTED: u8 = 1;
/// Largest part or padding size accepted (S3's largest part, 5 GiB): anything larger is
/// corrupt input, refused before any work is done.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// A parsed part header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartHeader {
    /// 1 or 2.
    pub version: u64,
    /// Bytes of the compressed payload (excluding header and padding).
    pub part_size: u64,
    /// Zero bytes after the payload.
    pub padding_size: u64,
    /// V2 flags (0 for V1).
    pub flags: u8,
}

impl PartHeader {
    /// A V1 header.
    pub fn v1(part_size: u64, padding_size: u64) -> PartHeader {
        PartHeader {
            version: PROTO_STREAM_V1,
            part_size,
            padding_size,
            flags: 0,
        }
    }

    /// Size of this header on the wire.
    pub fn len(&self) -> usize {
        if self.version == PROTO_STREAM_V2 {
            V2_HEADER_SIZE
        } else {
            V1_HEADER_SIZE
        }
    }

    /// Whether this header takes no bytes (never: headers are 24 or 32 bytes).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The header bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.len());
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&self.part_size.to_be_bytes());
        b.extend_from_slice(&self.padding_size.to_be_bytes());
        if self.version == PROTO_STREAM_V2 {
            b.push(self.flags);
            b.extend_from_slice(&[0; 7]);
        }
        b
    }

    /// Parses the first 24 bytes; for V2 the caller then reads [`PartHeader::parse_flags`].
    pub fn parse_v1_prefix(b: &[u8; 24]) -> Result<PartHeader, ErrorKind> {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(w)
        };
        let (version, part_size, padding_size) = (word(0), word(8), word(16));
        if version != PROTO_STREAM_V1 && version != PROTO_STREAM_V2 {
            return Err(ErrorKind::UnsupportedVersion(version));
        }
        if part_size > MAX_PART_SIZE {
            return Err(ErrorKind::PartTooLarge(part_size));
        }
        if padding_size > MAX_PART_SIZE {
            return Err(ErrorKind::PaddingTooLarge(padding_size));
        }
        Ok(PartHeader {
            version,
            part_size,
            padding_size,
            flags: 0,
        })
    }

    /// Reads the V2 flags block (8 bytes after the first 24).
    pub fn parse_flags(&mut self, b: &[u8; 8]) {
        self.flags = b[0];
    }

    /// Whether the payload is encrypted.
    pub fn encrypted(&self) -> bool {
        self.version == PROTO_STREAM_V2 && self.flags & FLAG_ENCRYPTED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_layout() {
        let h = PartHeader::v1(0x0102, 0x0a0b0c);
        let b = h.to_bytes();
        assert_eq!(b.len(), 24);
        assert_eq!(&b[..8], &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&b[8..16], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&b[16..], &[0, 0, 0, 0, 0, 0x0a, 0x0b, 0x0c]);
        let arr: [u8; 24] = b.try_into().unwrap();
        assert_eq!(PartHeader::parse_v1_prefix(&arr).unwrap(), h);
    }

    #[test]
    fn v2_layout() {
        let h = PartHeader {
            version: 2,
            part_size: 5,
            padding_size: 0,
            flags: FLAG_ENCRYPTED,
        };
        let b = h.to_bytes();
        assert_eq!(b.len(), 32);
        assert_eq!(b[24], 1);
        assert!(h.encrypted());
    }
}
