//! docs/errors.md documents exactly the codes of `ErrorCode::ALL`: one table row per code, with
//! its number, its name and its default reason, and no number the code does not know.

use std::collections::HashMap;

use voipchat_proto::ErrorCode;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Table rows whose first cell is an integer: errCode → the row's cells.
fn code_rows(doc: &str) -> HashMap<i32, Vec<String>> {
    let mut rows = HashMap::new();
    for line in doc.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        let first = cells[0].trim_matches('`');
        if let Ok(code) = first.parse::<i32>() {
            assert!(
                rows.insert(code, cells.clone()).is_none(),
                "errCode {code} has two rows in docs/errors.md"
            );
        }
    }
    rows
}

#[test]
fn every_code_has_its_row() {
    let doc = doc();
    let rows = code_rows(&doc);
    for c in ErrorCode::ALL {
        let row = rows
            .get(&c.code())
            .unwrap_or_else(|| panic!("docs/errors.md has no row for {c:?} ({})", c.code()));
        assert_eq!(row[0], c.code().to_string(), "{c:?}: the number, exactly");
        assert_eq!(row[1], format!("`{c:?}`"), "{c:?}: the name column");
        let line = row.join(" | ");
        assert!(
            line.contains(&format!(":fail {}`", c.reason())),
            "{c:?}: its row must show errMsg with the exact reason {:?}",
            c.reason()
        );
        assert!(
            row.len() >= 5 && row[4].len() > 10,
            "{c:?}: say when it happens"
        );
    }
}

#[test]
fn no_undocumented_number_appears() {
    let doc = doc();
    for code in code_rows(&doc).keys() {
        assert!(
            ErrorCode::from_code(*code).is_some(),
            "docs/errors.md documents {code}, which ErrorCode does not know"
        );
    }
    // Codes named in the prose, like **-13000**, must exist too.
    for word in doc.split(|c: char| !(c == '-' || c.is_ascii_digit())) {
        if word.len() >= 2 && word.starts_with('-') && word[1..].bytes().all(|b| b.is_ascii_digit())
        {
            let n: i32 = word.parse().expect("a number");
            assert!(
                ErrorCode::from_code(n).is_some(),
                "docs/errors.md mentions {n}, which is not an errCode"
            );
        }
    }
}

#[test]
fn wx_codes_are_marked_as_such() {
    let rows = code_rows(&doc());
    for c in [
        ErrorCode::AlreadyInRoom,
        ErrorCode::MicrophoneBusy,
        ErrorCode::ExitedWhileJoining,
        ErrorCode::SystemError,
    ] {
        assert_eq!(
            rows[&c.code()].last().map(String::as_str),
            Some("wx"),
            "{c:?}"
        );
    }
    assert_eq!(
        rows[&ErrorCode::RoomQuotaExceeded.code()]
            .last()
            .map(String::as_str),
        Some("WeChat ops")
    );
}
