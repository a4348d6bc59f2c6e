//! Raw deflate and inflate over pure-Rust back ends: zlib-rs (through flate2), always, and
//! miniz_oxide with the `miniz` feature, so that one benchmark run can compare them
//! (docs/benchmarks.md). The gzip framing around them is the codec's own.

use thiserror::Error;

/// Which deflate implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// zlib-rs, a Rust port of zlib (through flate2). The default: faster in our measurements.
    #[default]
    ZlibRs,
    /// miniz_oxide (feature `miniz`; for benchmarks).
    #[cfg(feature = "miniz")]
    Miniz,
}

impl Backend {
    /// Every back end compiled in.
    #[cfg(feature = "miniz")]
    pub const ALL: [Backend; 2] = [Backend::ZlibRs, Backend::Miniz];
    /// Every back end compiled in.
    #[cfg(not(feature = "miniz"))]
    pub const ALL: [Backend; 1] = [Backend::ZlibRs];

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::ZlibRs => "zlib-rs",
            #[cfg(feature = "miniz")]
            Backend::Miniz => "miniz_oxide",
        }
    }
}

/// How far to push compressed output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Keep data buffered for better compression.
    None,
    /// Emit everything so far and align to a byte boundary; the stream may continue, and a
    /// new compressor may continue it (no back-references cross a sync point when the old
    /// compressor is dropped).
    Sync,
    /// Emit everything and the final block.
    Finish,
}

/// Corrupt deflate data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid deflate data after {consumed} more input bytes ({detail})")]
pub struct InflateError {
    /// Input bytes of the failing call that the back end read before it noticed the damage
    /// (0 when the error is reported by the call after the one that read them).
    pub consumed: usize,
    /// The back end's own words (for debugging; they differ between back ends).
    pub detail: String,
}

enum DeflaterInner {
    Zlib(flate2::Compress),
    #[cfg(feature = "miniz")]
    Miniz(Box<miniz_oxide::deflate::core::CompressorOxide>),
}

/// A raw deflate compressor.
pub struct Deflater {
    inner: DeflaterInner,
}

impl Deflater {
    /// A compressor at `level` (0–9; Teleport uses 1).
    pub fn new(backend: Backend, level: u32) -> Deflater {
        let inner = match backend {
            Backend::ZlibRs => DeflaterInner::Zlib(flate2::Compress::new(
                flate2::Compression::new(level),
                false,
            )),
            #[cfg(feature = "miniz")]
            Backend::Miniz => {
                let flags = miniz_oxide::deflate::core::create_comp_flags_from_zip_params(
                    level as i32,
                    -15,
                    0,
                );
                DeflaterInner::Miniz(Box::new(miniz_oxide::deflate::core::CompressorOxide::new(
                    flags,
                )))
            }
        };
        Deflater { inner }
    }

    /// Compresses all of `input`, appending to `out`.
    pub fn compress(&mut self, mut input: &[u8], out: &mut Vec<u8>, flush: Flush) {
        match &mut self.inner {
            DeflaterInner::Zlib(c) => {
                let f = match flush {
                    Flush::None => flate2::FlushCompress::None,
                    Flush::Sync => flate2::FlushCompress::Sync,
                    Flush::Finish => flate2::FlushCompress::Finish,
                };
                loop {
                    let room = (input.len() / 2).max(4096) + 64;
                    out.reserve(room);
                    let spare = out.capacity() - out.len();
                    let in_before = c.total_in();
                    let status = c.compress_vec(input, out, f);
                    let used = (c.total_in() - in_before) as usize;
                    input = &input[used..];
                    let full = out.capacity() - out.len() == 0 || spare == 0;
                    match status {
                        Ok(flate2::Status::StreamEnd) => break,
                        Ok(_) if input.is_empty() && !full && flush != Flush::Finish => break,
                        Ok(_) => {}
                        // zlib-rs only fails on misuse (e.g. compressing after Finish).
                        Err(_) => break,
                    }
                }
            }
            #[cfg(feature = "miniz")]
            DeflaterInner::Miniz(c) => {
                use miniz_oxide::deflate::core::{TDEFLFlush, TDEFLStatus, compress};
                let f = match flush {
                    Flush::None => TDEFLFlush::None,
                    Flush::Sync => TDEFLFlush::Sync,
                    Flush::Finish => TDEFLFlush::Finish,
                };
                let mut chunk = vec![0u8; (input.len() / 2).clamp(4096, 256 * 1024)];
                loop {
                    let (status, used, written) = compress(c, input, &mut chunk, f);
                    out.extend_from_slice(&chunk[..written]);
                    input = &input[used..];
                    match status {
                        TDEFLStatus::Done => break,
                        TDEFLStatus::Okay
                            if input.is_empty()
                                && written < chunk.len()
                                && flush != Flush::Finish =>
                        {
                            break;
                        }
                        TDEFLStatus::Okay => {}
                        _ => break,
                    }
                }
            }
        }
    }
}

enum InflaterInner {
    Zlib(flate2::Decompress),
    #[cfg(feature = "miniz")]
    Miniz(Box<miniz_oxide::inflate::stream::InflateState>),
}

/// A raw deflate decompressor.
pub struct Inflater {
    inner: InflaterInner,
    /// An error found in a call that also produced output: that output is returned first and
    /// the error on the next call, so nothing decoded before the damage is lost.
    pending: Option<InflateError>,
}

/// Progress of one [`Inflater::inflate`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflateProgress {
    /// Input bytes used.
    pub consumed: usize,
    /// Output bytes written.
    pub written: usize,
    /// The deflate stream ended (final block done).
    pub done: bool,
}

impl Inflater {
    /// A new decompressor.
    pub fn new(backend: Backend) -> Inflater {
        let inner = match backend {
            Backend::ZlibRs => InflaterInner::Zlib(flate2::Decompress::new(false)),
            #[cfg(feature = "miniz")]
            Backend::Miniz => InflaterInner::Miniz(
                miniz_oxide::inflate::stream::InflateState::new_boxed(miniz_oxide::DataFormat::Raw),
            ),
        };
        Inflater {
            inner,
            pending: None,
        }
    }

    /// Forgets the current stream, ready for a new one.
    pub fn reset(&mut self) {
        self.pending = None;
        match &mut self.inner {
            InflaterInner::Zlib(d) => d.reset(false),
            #[cfg(feature = "miniz")]
            InflaterInner::Miniz(s) => s.reset(miniz_oxide::DataFormat::Raw),
        }
    }

    /// Inflates from `input` into `out`.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<InflateProgress, InflateError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        match &mut self.inner {
            InflaterInner::Zlib(d) => {
                let (i0, o0) = (d.total_in(), d.total_out());
                let r = d.decompress(input, out, flate2::FlushDecompress::None);
                let consumed = (d.total_in() - i0) as usize;
                let written = (d.total_out() - o0) as usize;
                let status = match r {
                    Ok(s) => s,
                    Err(e) if written > 0 => {
                        self.pending = Some(InflateError {
                            consumed: 0,
                            detail: e.to_string(),
                        });
                        return Ok(InflateProgress {
                            consumed,
                            written,
                            done: false,
                        });
                    }
                    Err(e) => {
                        return Err(InflateError {
                            consumed,
                            detail: e.to_string(),
                        });
                    }
                };
                Ok(InflateProgress {
                    consumed,
                    written,
                    done: status == flate2::Status::StreamEnd,
                })
            }
            #[cfg(feature = "miniz")]
            InflaterInner::Miniz(s) => {
                use miniz_oxide::{MZError, MZFlush, MZStatus};
                let r = miniz_oxide::inflate::stream::inflate(s, input, out, MZFlush::None);
                let done = match r.status {
                    Ok(MZStatus::StreamEnd) => true,
                    Ok(_) | Err(MZError::Buf) => false,
                    Err(e) if r.bytes_written > 0 => {
                        self.pending = Some(InflateError {
                            consumed: 0,
                            detail: format!("{e:?}"),
                        });
                        false
                    }
                    Err(e) => {
                        return Err(InflateError {
                            consumed: r.bytes_consumed,
                            detail: format!("{e:?}"),
                        });
                    }
                };
                Ok(InflateProgress {
                    consumed: r.bytes_consumed,
                    written: r.bytes_written,
                    done,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(backend: Backend, data: &[u8], pieces: &[usize]) {
        let mut d = Deflater::new(backend, 1);
        let mut out = Vec::new();
        let mut rest = data;
        for &p in pieces {
            let (a, b) = rest.split_at(p.min(rest.len()));
            d.compress(a, &mut out, Flush::None);
            rest = b;
        }
        d.compress(rest, &mut out, Flush::Finish);
        for b2 in Backend::ALL {
            let mut inf = Inflater::new(b2);
            let mut got = vec![0u8; data.len() + 16];
            let mut pos = 0;
            let mut inp = &out[..];
            loop {
                let p = inf.inflate(inp, &mut got[pos..]).unwrap();
                inp = &inp[p.consumed..];
                pos += p.written;
                if p.done {
                    break;
                }
                assert!(p.consumed > 0 || p.written > 0, "no progress");
            }
            assert_eq!(&got[..pos], data, "{backend:?} -> {b2:?}");
        }
    }

    #[test]
    fn both_backends_round_trip_and_interoperate() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7) as u8)
            .collect();
        for b in Backend::ALL {
            round_trip(b, &data, &[1, 10, 1000, 70_000]);
            round_trip(b, b"", &[]);
        }
    }

    #[test]
    fn sync_points_let_a_new_compressor_continue() {
        let a = b"hello hello hello hello".repeat(100);
        let b = b"world world world".repeat(100);
        for backend in Backend::ALL {
            let mut out = Vec::new();
            let mut d1 = Deflater::new(backend, 1);
            d1.compress(&a, &mut out, Flush::Sync);
            drop(d1);
            let mut d2 = Deflater::new(backend, 1);
            d2.compress(&b, &mut out, Flush::Finish);
            let mut inf = Inflater::new(Backend::ZlibRs);
            let mut got = vec![0u8; a.len() + b.len() + 10];
            let p = inf.inflate(&out, &mut got).unwrap();
            assert!(p.done);
            assert_eq!(
                &got[..p.written],
                [a.clone(), b.clone()].concat().as_slice()
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for b in Backend::ALL {
            let mut inf = Inflater::new(b);
            let mut out = [0u8; 64];
            assert!(inf.inflate(&[0xff; 32], &mut out).is_err());
        }
    }
}
