//! Where something was written: file, line and column.

use std::fmt;
use std::path::PathBuf;

/// A place in a pipeline file.
///
/// `line` and `column` are 1-based and count characters, as editors do. A `line` of 0
/// means the file as a whole (for example when it cannot be read); such a location
/// displays as the file name alone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    /// The file, as it was given to [`load`](crate::load) or [`parse`](crate::parse)
    /// (a directory path joined with the file name when a directory was loaded).
    pub file: PathBuf,
    /// Line, 1-based; 0 for the whole file.
    pub line: usize,
    /// Column, 1-based, in characters; 0 for the whole file.
    pub column: usize,
}

impl Location {
    /// A location in `file` at `line` and `column` (both 1-based).
    pub fn new(file: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        Self {
            file: file.into(),
            line,
            column,
        }
    }

    /// The file as a whole: line and column 0.
    pub fn whole_file(file: impl Into<PathBuf>) -> Self {
        Self::new(file, 0, 0)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}
