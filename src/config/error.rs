//! Configuration problems: what went wrong, in which file, under which key.
//!
//! Loading never stops at the first mistake. Every check pushes a
//! [`Problem`] into a [`Problems`] collector, and the caller turns a
//! non-empty collector into one [`ConfigError`] that lists them all.

use std::fmt;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in, or `embedded default`.
    pub file: String,
    /// The key path, like `cluster[0].nodes[1].url`; empty when the problem
    /// is about the whole file (unreadable, TOML syntax error).
    pub key: String,
    /// What is wrong, lowercase, quoting the offending value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found in a configuration; displays one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<Problem>,
}

impl ConfigError {
    /// Builds an error from problems found elsewhere (for example by a
    /// caller that checks the configuration against the running state).
    pub fn new(problems: Vec<Problem>) -> Self {
        ConfigError { problems }
    }

    /// An error with a single problem.
    pub fn single(file: &str, key: &str, message: impl Into<String>) -> Self {
        let mut problems = Problems::new(file);
        problems.push(key, message);
        problems.into_error()
    }

    /// All problems, in the order they were found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems for one file while a configuration is checked.
#[derive(Debug)]
pub(crate) struct Problems {
    file: String,
    list: Vec<Problem>,
}

impl Problems {
    pub(crate) fn new(file: &str) -> Self {
        Problems {
            file: file.to_owned(),
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, key: &str, message: impl Into<String>) {
        self.list.push(Problem {
            file: self.file.clone(),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Whether a problem was already reported for `key` or a key below it,
    /// so a key that failed to deserialize is not also reported as missing.
    pub(crate) fn mentions(&self, key: &str) -> bool {
        self.list.iter().any(|p| {
            p.key
                .strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn into_error(self) -> ConfigError {
        ConfigError {
            problems: self.list,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_displays_one_problem_per_line_with_file_and_key() {
        let mut problems = Problems::new("/etc/x.toml");
        problems.push("server.bind", "expected an address, got \"x\"");
        problems.push("", "the file does not exist");
        let text = problems.into_error().to_string();
        assert_eq!(
            text,
            "/etc/x.toml: server.bind: expected an address, got \"x\"\n\
             /etc/x.toml: the file does not exist"
        );
    }

    #[test]
    fn mentions_matches_the_key_and_keys_below_it_only() {
        let mut problems = Problems::new("f");
        problems.push("cluster[0].nodes[1].url", "bad");
        assert!(problems.mentions("cluster[0].nodes[1].url"));
        assert!(problems.mentions("cluster[0].nodes"));
        assert!(!problems.mentions("cluster[0].nodes[1].u"));
        assert!(!problems.mentions("cluster[1]"));
    }
}
