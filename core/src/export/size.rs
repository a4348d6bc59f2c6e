//! [`TerminalSize`]: the `size` field of `session.start` and `resize` events.

use std::fmt;

use thiserror::Error;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TerminalSize {
    /// Columns (width).
    pub cols: u16,
    /// Rows (height).
    pub rows: u16,
}

/// A `size` field that is not a terminal size.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("terminal size {text:?} is not COLS:ROWS with both between 1 and 65535")]
pub struct SizeError {
    /// The text that was refused (at most 64 characters of it).
    pub text: String,
}

impl TerminalSize {
    /// The size players assume when a recording names none (80×24, as asciinema and xterm).
    pub const DEFAULT: TerminalSize = TerminalSize { cols: 80, rows: 24 };

    /// A size; both sides must be at least 1.
    pub fn new(cols: u16, rows: u16) -> Option<TerminalSize> {
        (cols > 0 && rows > 0).then_some(TerminalSize { cols, rows })
    }

    /// Parses upstream's `COLS:ROWS` (Teleport's `term.Params.Serialize`, e.g. `80:25`);
    /// asciicast's `COLSxROWS` is accepted too. Surrounding spaces are ignored.
    pub fn parse(text: &str) -> Result<TerminalSize, SizeError> {
        let err = || SizeError {
            text: text.chars().take(64).collect(),
        };
        let t = text.trim();
        let (c, r) = t
            .split_once(':')
            .or_else(|| t.split_once('x'))
            .ok_or_else(err)?;
        let cols = c.trim().parse::<u16>().map_err(|_| err())?;
        let rows = r.trim().parse::<u16>().map_err(|_| err())?;
        TerminalSize::new(cols, rows).ok_or_else(err)
    }

    /// Asciicast's form, `COLSxROWS` (the data of an `"r"` event).
    pub fn to_asciicast(self) -> String {
        format!("{}x{}", self.cols, self.rows)
    }
}

/// Upstream's form, `COLS:ROWS`: what `session.start` and `resize` events carry.
impl fmt::Display for TerminalSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.cols, self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_refuses_garbage() {
        assert_eq!(
            TerminalSize::parse("80:25"),
            Ok(TerminalSize { cols: 80, rows: 25 })
        );
        assert_eq!(
            TerminalSize::parse(" 168x44 "),
            Ok(TerminalSize {
                cols: 168,
                rows: 44
            })
        );
        for bad in [
            "", "80", "0:24", "80:0", "a:b", "80:24:1", "-1:5", "70000:1",
        ] {
            assert!(TerminalSize::parse(bad).is_err(), "{bad:?} accepted");
        }
        let s = TerminalSize::new(120, 40).unwrap();
        assert_eq!(s.to_string(), "120:40");
        assert_eq!(s.to_asciicast(), "120x40");
        assert_eq!(TerminalSize::parse(&s.to_string()), Ok(s));
    }
}
