//! Which format a recording is in (upstream's `DetectFormat`, extended to V2).

/// A recording format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ProtoStream version 1.
    ProtoV1,
    /// ProtoStream version 2 (may be encrypted).
    ProtoV2,
    /// A pre-4.4 tar archive (index, events and chunks files).
    LegacyTar,
    /// None of these.
    Unknown,
}

/// Looks at the first bytes (at least 8; 512 to recognise a tar archive).
pub fn detect_format(head: &[u8]) -> Format {
    if head.len() >= 8 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&head[..8]);
        match u64::from_be_bytes(w) {
            1 => return Format::ProtoV1,
            2 => return Format::ProtoV2,
            _ => {}
        }
    }
    if super::legacy::is_tar_header(head) {
        Format::LegacyTar
    } else {
        Format::Unknown
    }
}
