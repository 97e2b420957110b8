//! File names that mark work in progress: editors, downloaders and packagers
//! write under a temporary name and rename into place when done, so a watch
//! folder must not send anything under such a name.

/// The default temporary-name patterns: dotfiles, `*.tmp`, `*.part`, editor
/// backups (`*~`) and vim swap files (`*.swp`).
pub const DEFAULT_TEMPORARY_PATTERNS: &[&str] = &[".*", "*.tmp", "*.part", "*~", "*.swp"];

/// Shell-style patterns over one file name: `*` matches any run of
/// characters, `?` exactly one, everything else itself (case-sensitive, as
/// file names are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePatterns {
    patterns: Vec<Vec<char>>,
}

impl NamePatterns {
    pub fn new<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Self {
        Self {
            patterns: patterns
                .into_iter()
                .map(|p| p.as_ref().chars().collect())
                .collect(),
        }
    }

    /// True when `name` matches any pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        self.patterns.iter().any(|p| glob_match(p, &name))
    }
}

impl Default for NamePatterns {
    fn default() -> Self {
        Self::new(DEFAULT_TEMPORARY_PATTERNS)
    }
}

/// Iterative wildcard matching with backtracking to the last `*` (linear in
/// practice, never exponential).
fn glob_match(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_patterns_catch_temporary_names_only() {
        let patterns = NamePatterns::default();
        for temporary in [
            ".seg1.m4s",
            ".hidden",
            "seg1.m4s.tmp",
            "video.part",
            "notes.txt~",
            ".manifest.mpd.swp",
            "x.swp",
        ] {
            assert!(patterns.matches(temporary), "{temporary}");
        }
        for complete in [
            "seg1.m4s",
            "manifest.mpd",
            "tmp",
            "a.tmpx",
            "part.mp4",
            "index.m3u8",
        ] {
            assert!(!patterns.matches(complete), "{complete}");
        }
    }

    #[test]
    fn wildcards() {
        let patterns = NamePatterns::new(["seg-??.m4s", "*-*-*.ts", "exact"]);
        assert!(patterns.matches("seg-01.m4s"));
        assert!(!patterns.matches("seg-001.m4s"));
        assert!(patterns.matches("a-b-c.ts"));
        assert!(patterns.matches("--.ts-.ts-x.ts"));
        assert!(!patterns.matches("a-b.ts"));
        assert!(patterns.matches("exact"));
        assert!(!patterns.matches("exactly"));
        assert!(!NamePatterns::new(Vec::<String>::new()).matches("anything"));
        assert!(NamePatterns::new(["*"]).matches(""));
    }
}
