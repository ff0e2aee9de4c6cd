//! Every relative link in the repository's Markdown files (outside `target/`, `node_modules/`
//! and `.git/`) resolves to a file or directory that exists inside the repository; no link
//! leaves it (like `../shared/…`, which only exists next to one checkout). Links inside code
//! blocks and code spans are not links and are not checked; URLs with a scheme (`https:`,
//! `mailto:`) and pure `#anchors` are not checked either.

use std::path::{Component, Path, PathBuf};

fn repo_root() -> PathBuf {
    std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .expect("the repository root")
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let file_type = entry.file_type().unwrap();
        if file_type.is_dir() {
            if !matches!(name.to_str(), Some("target" | "node_modules" | ".git")) {
                markdown_files(&path, out);
            }
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("md"))
        {
            out.push(path);
        }
    }
}

/// Removes code spans (`…`, ``…``) from one line of text.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let fence = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(fence) {
            Some(end) => rest = &after[end + ticks..],
            // An unmatched backtick is literal text.
            None => {
                out.push_str(fence);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The link destinations of a Markdown text: inline links and images `[x](dest "title")`,
/// reference definitions `[x]: dest`, and HTML `href="…"` / `src="…"`, outside fenced code
/// blocks and code spans. Returns (line number, destination).
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let marker: String = trimmed
            .chars()
            .take_while(|&c| c == '`' || c == '~')
            .collect();
        if marker.len() >= 3
            && (marker.chars().all(|c| c == '`') || marker.chars().all(|c| c == '~'))
        {
            match &fence {
                None => fence = Some(marker),
                Some(open) if marker.starts_with(open.as_str()) => fence = None,
                Some(_) => {}
            }
            continue;
        }
        if fence.is_some() {
            continue;
        }
        let line = without_code_spans(raw);
        let n = i + 1;
        // Reference definitions.
        let t = line.trim_start();
        if t.starts_with('[') {
            if let Some((label, dest)) = t.split_once("]:") {
                if !label.contains("](") {
                    if let Some(d) = dest.split_whitespace().next() {
                        out.push((n, d.trim_matches(['<', '>']).to_string()));
                    }
                    continue;
                }
            }
        }
        // Inline links and images: "](" up to the matching ")".
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let (dest, tail) = if let Some(inner) = after.strip_prefix('<') {
                match inner.find('>') {
                    Some(end) => (&inner[..end], &inner[end..]),
                    None => break,
                }
            } else {
                let mut depth = 0usize;
                let mut end = after.len();
                for (j, c) in after.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 0 => {
                            end = j;
                            break;
                        }
                        ')' => depth -= 1,
                        c if c.is_whitespace() => {
                            end = j;
                            break;
                        }
                        _ => {}
                    }
                }
                (&after[..end], &after[end..])
            };
            out.push((n, dest.to_string()));
            rest = tail;
        }
        // HTML attributes.
        for attr in ["href=\"", "src=\""] {
            let mut rest = line.as_str();
            while let Some(at) = rest.find(attr) {
                let after = &rest[at + attr.len()..];
                let end = after.find('"').unwrap_or(after.len());
                out.push((n, after[..end].to_string()));
                rest = &after[end..];
            }
        }
    }
    out
}

/// Whether `dest` names something by a scheme (`https:`, `mailto:`) or a network path.
fn is_external(dest: &str) -> bool {
    if dest.starts_with("//") {
        return true;
    }
    match dest.find(':') {
        Some(i) => {
            let scheme = &dest[..i];
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                && !dest[..i].contains('/')
        }
        None => false,
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Where a relative `dest` of the file `from` points, lexically resolved; `Err` when it
/// climbs out of `root`.
fn resolve(root: &Path, from: &Path, dest: &str) -> Result<PathBuf, String> {
    let base = if dest.starts_with('/') {
        root.to_path_buf()
    } else {
        from.parent().unwrap().to_path_buf()
    };
    let rel = base.strip_prefix(root).unwrap().to_path_buf();
    let mut parts: Vec<std::ffi::OsString> =
        rel.components().map(|c| c.as_os_str().to_owned()).collect();
    for c in Path::new(dest.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err("points outside the repository".into());
                }
            }
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(parts.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// The problem of one link, if any.
fn check(root: &Path, from: &Path, dest: &str) -> Option<String> {
    if dest.is_empty() || dest.starts_with('#') || is_external(dest) {
        return None;
    }
    let path = dest.split(['#', '?']).next().unwrap_or_default();
    let path = percent_decode(path);
    let target = match resolve(root, from, &path) {
        Ok(t) => t,
        Err(e) => return Some(e),
    };
    if !target.exists() {
        return Some(format!("{} does not exist", target.display()));
    }
    // A symlink inside the repository may still lead out of it.
    match std::fs::canonicalize(&target) {
        Ok(real) if real.starts_with(root) => None,
        Ok(real) => Some(format!(
            "leads outside the repository, to {}",
            real.display()
        )),
        Err(e) => Some(format!("{}: {e}", target.display())),
    }
}

#[test]
fn every_relative_markdown_link_resolves_inside_the_repository() {
    let root = repo_root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("README.md")) && files.len() >= 5,
        "found the Markdown files: {files:?}"
    );
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, dest) in links(&text) {
            if !(dest.is_empty() || dest.starts_with('#') || is_external(&dest)) {
                checked += 1;
            }
            if let Some(problem) = check(&root, file, &dest) {
                let shown = file.strip_prefix(&root).unwrap().display().to_string();
                problems.push(format!("{shown}:{line}: ({dest}) {problem}"));
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} relative links found: is the parser broken?"
    );
    assert!(
        problems.is_empty(),
        "broken or outside links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_link_parser_sees_links_and_ignores_code() {
    let text = "\
See [the API](docs/api.md#top) and ![a diagram](img/a%20b.png \"title\").
Not a link: `[x](nope.md)`, nor ``[y](nope2.md)``.
```sh
[z](nope3.md)
```
[ref]: ../outside.md
<a href=\"sdk/js/voipchat.js\">SDK</a> <https://example.com> [web](https://example.com/x)
[paren](path/with(parens).md) [angle](<with space.md>)
";
    let dests: Vec<String> = links(text).into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        dests,
        [
            "docs/api.md#top",
            "img/a%20b.png",
            "../outside.md",
            "https://example.com/x",
            "sdk/js/voipchat.js",
            "path/with(parens).md",
            "with space.md",
        ]
    );
    assert!(is_external("https://example.com/x") && is_external("mailto:a@b"));
    assert!(!is_external("docs/api.md") && !is_external("a/b:c.md"));
    assert_eq!(percent_decode("a%20b.png"), "a b.png");

    let root = repo_root();
    let readme = root.join("README.md");
    assert_eq!(check(&root, &readme, "docs/api.md#x"), None);
    assert_eq!(check(&root, &readme, "/docs/api.md"), None, "root-relative");
    assert_eq!(check(&root, &readme, "docs/"), None, "a directory");
    assert!(check(&root, &readme, "docs/nope.md")
        .unwrap()
        .contains("does not exist"));
    assert_eq!(
        check(&root, &readme, "../shared/DESIGN.md").as_deref(),
        Some("points outside the repository")
    );
    assert_eq!(
        check(&root, &root.join("docs/api.md"), "../../x.md").as_deref(),
        Some("points outside the repository")
    );
}
