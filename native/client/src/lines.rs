//! [`LineSplitter`]: JSON lines out of network chunks, with a bound on a line's length so that
//! a server (or anything pretending to be one) can't make the client buffer without limit.

/// The longest line accepted in a JSON-lines answer. An event is at most 64 KiB as protobuf;
/// its JSON (base64 print data, escaped strings) stays far below this.
pub const MAX_LINE: usize = 4 << 20;

/// A line longer than the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a line is longer than {max} bytes")]
pub struct LineTooLong {
    /// The bound.
    pub max: usize,
}

/// Splits pushed bytes into lines (without `\n`; a trailing `\r` is kept for the JSON reader
/// to ignore as white space).
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    max: usize,
}

impl LineSplitter {
    /// A splitter refusing lines over `max` bytes.
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Adds a chunk. Fails if the line in progress grows over the bound.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), LineTooLong> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
        // The unfinished tail (after the last newline) must fit.
        let tail = match memchr::memrchr(b'\n', &self.buf) {
            Some(i) => self.buf.len() - i - 1,
            None => self.buf.len(),
        };
        if tail > self.max {
            return Err(LineTooLong { max: self.max });
        }
        Ok(())
    }

    /// The next complete line, if any.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let rest = &self.buf[self.start..];
        let i = memchr::memchr(b'\n', rest)?;
        let line = &self.buf[self.start..self.start + i];
        self.start += i + 1;
        Some(line)
    }

    /// What is left after the last newline (the last line of an answer without a final
    /// newline).
    pub fn finish(&mut self) -> Option<&[u8]> {
        let rest = &self.buf[self.start..];
        self.start = self.buf.len();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn all(s: &mut LineSplitter) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(l) = s.next_line() {
            v.push(String::from_utf8(l.to_vec()).unwrap());
        }
        v
    }

    #[test]
    fn lines_across_chunks() {
        let mut s = LineSplitter::new(8);
        s.push(b"ab").unwrap();
        assert!(all(&mut s).is_empty());
        s.push(b"c\nde\n\nf").unwrap();
        assert_eq!(all(&mut s), ["abc", "de", ""]);
        s.push(b"g").unwrap();
        assert_eq!(s.finish(), Some(&b"fg"[..]));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_line_refused() {
        let mut s = LineSplitter::new(4);
        s.push(b"abcd\nef").unwrap();
        assert_eq!(all(&mut s), ["abcd"]);
        assert_eq!(s.push(b"ghi"), Err(LineTooLong { max: 4 }));
    }
}
