//! Timing: MACs, tags and digests are compared in constant time (`subtle`, or
//! inside the AEAD and HMAC crates), never with a hand-written `==` or `!=`. This scans
//! the sources for such a comparison so that a new one fails a test.

use std::fs;
use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).expect("read a source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).expect("read a source file");
            out.push((path.display().to_string(), text));
        }
    }
}

fn is_secretish_operand(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '.');
    let last = w.rsplit('.').next().unwrap_or(w).to_ascii_lowercase();
    matches!(
        last.as_str(),
        "mac" | "tag" | "digest" | "prev_mac" | "expected" | "kek"
    ) || last.ends_with("_mac")
        || last.ends_with("_tag")
}

#[test]
fn no_hand_written_comparison_of_macs_tags_or_digests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("migrations"), &mut files);
    let mut found = Vec::new();
    for (name, text) in &files {
        // Unit tests may compare freely.
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or(line);
            for op in ["==", "!="] {
                let mut rest = line;
                while let Some(i) = rest.find(op) {
                    let left = rest[..i].split_whitespace().last().unwrap_or("");
                    let right = rest[i + 2..].split_whitespace().next().unwrap_or("");
                    if is_secretish_operand(left) || is_secretish_operand(right) {
                        found.push(format!("{name}:{}: {}", n + 1, line.trim()));
                    }
                    rest = &rest[i + 2..];
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "hand-written comparisons of MACs/tags/digests:\n{}",
        found.join("\n")
    );
}
