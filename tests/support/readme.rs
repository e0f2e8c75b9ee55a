//! The README's shell blocks as commands a test can run as written: each line (with its `\`
//! continuations) split into words as sh splits them (single and double quotes, no expansion),
//! with a trailing `&`, a `> FILE` redirection and a trailing `# comment` taken apart. Only
//! what the README's examples use is understood; anything else fails the test that reads it.

use std::path::Path;
use std::process::Child;

/// One command line of a README shell block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    pub words: Vec<String>,
    /// Ended with `&`.
    pub background: bool,
    /// `> FILE`.
    pub stdout_to: Option<String>,
    /// The `# comment` after the command (what it should print, in the README's examples).
    pub comment: Option<String>,
    /// The line as written, for failure messages.
    pub line: String,
}

/// README.md, as it is in the source tree.
pub fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// The commands of the first ```` ```sh ```` block of `readme` that contains `needle`.
pub fn sh_block_containing(readme: &str, needle: &str) -> Vec<ShellCommand> {
    let block = readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block))
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("README.md has no sh block with {needle:?}"));
    block
        .replace("\\\n", " ")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> ShellCommand {
    let mut words = Vec::new();
    let mut comment = None;
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let text = word.get_or_insert_with(String::new);
                for quoted in chars.by_ref() {
                    if quoted == c {
                        break;
                    }
                    text.push(quoted);
                }
            }
            '#' if word.is_none() => {
                comment = Some(chars.by_ref().collect::<String>().trim().to_string());
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    let background = words.last().is_some_and(|word| word == "&");
    if background {
        words.pop();
    }
    let mut stdout_to = None;
    if let Some(at) = words.iter().position(|word| word == ">") {
        let rest = words.split_off(at);
        assert_eq!(rest.len(), 2, "{line:?}: one redirection target");
        stdout_to = Some(rest[1].clone());
    }
    ShellCommand {
        words,
        background,
        stdout_to,
        comment,
        line: line.trim().to_string(),
    }
}

/// A process started in the background; killed when dropped.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
