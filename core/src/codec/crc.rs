//! The gzip members' CRC-32, over a member's uncompressed bytes as they come: the reader
//! checks each trailer with it, the writer writes it.
//!
//! Two libraries, chosen by target: natively crc32fast, which folds with carry-less
//! multiplication (PCLMULQDQ, AVX-512) where the CPU has it; in WebAssembly, which has no
//! carry-less multiply, zlib-rs's braided table method, which Chromium ran at about 1.3× the
//! speed of crc32fast's 16-byte slicing table (2.5 against 1.9 GB/s, docs/benchmarks.md, wasm
//! section). zlib-rs is already in every build as flate2's back end.

/// A running CRC-32 (the gzip trailer's `CRC32`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Crc {
    #[cfg(not(target_arch = "wasm32"))]
    hasher: crc32fast::Hasher,
    #[cfg(target_arch = "wasm32")]
    value: u32,
}

impl Crc {
    /// Adds bytes.
    #[inline]
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        #[cfg(not(target_arch = "wasm32"))]
        self.hasher.update(bytes);
        #[cfg(target_arch = "wasm32")]
        {
            self.value = zlib_rs::crc32::crc32(self.value, bytes);
        }
    }

    /// The CRC of everything added.
    pub(crate) fn finalize(self) -> u32 {
        #[cfg(not(target_arch = "wasm32"))]
        return self.hasher.finalize();
        #[cfg(target_arch = "wasm32")]
        return self.value;
    }
}

#[cfg(test)]
mod tests {
    use super::Crc;

    /// Both libraries give the same value for the same bytes, however they are split (the
    /// wasm one is checked here natively).
    #[test]
    fn both_libraries_agree_across_splits() {
        let mut x = 7u32;
        let bytes: Vec<u8> = (0..100_000)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let want = crc32fast::hash(&bytes);
        for split in [0, 1, 63, 64, 65, 4096, 99_999, 100_000] {
            let (a, b) = bytes.split_at(split);
            let mut c = Crc::default();
            c.update(a);
            c.update(b);
            assert_eq!(c.finalize(), want, "crc32fast, split at {split}");
            let braid = zlib_rs::crc32::crc32(zlib_rs::crc32::crc32(0, a), b);
            assert_eq!(braid, want, "zlib-rs, split at {split}");
        }
        assert_eq!(Crc::default().finalize(), 0);
        assert_eq!(zlib_rs::crc32::crc32(0, b""), 0);
    }
}
