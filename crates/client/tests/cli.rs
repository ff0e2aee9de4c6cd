//! The `voipchat-client` binary's arguments: what it says about a wrong `--send` file or
//! `--server`, and that its help describes every flag with its default. None of these needs a
//! server: the checks fail before any connection.

use std::path::PathBuf;
use std::process::{Command, Output};

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voipchat-client"))
        .args(args)
        .output()
        .expect("voipchat-client runs")
}

/// A scratch directory of this test process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("voipchat-client-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 0.1 s of 48 kHz mono silence as a WAV file.
fn wav_bytes() -> Vec<u8> {
    let samples = 4800u32;
    let data_len = samples * 2;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&48_000u32.to_le_bytes());
    b.extend_from_slice(&96_000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    b.resize(b.len() + data_len as usize, 0);
    b
}

fn join_sending(file: &std::path::Path) -> Output {
    client(&[
        "join",
        // Nothing listens here; the file check comes before any connection.
        "--server",
        "http://127.0.0.1:9",
        "--app-id",
        "wx1",
        "--open-id",
        "alice",
        "--group-id",
        "g",
        "--session-key",
        "k",
        "--send",
        file.to_str().unwrap(),
        "--duration",
        "1",
    ])
}

#[test]
fn send_with_a_wav_file_says_an_ogg_opus_file_is_needed_and_how_to_make_one() {
    let dir = Scratch::new("wav");
    let wav = dir.0.join("speech.wav");
    std::fs::write(&wav, wav_bytes()).unwrap();
    let out = join_sending(&wav);
    assert_eq!(out.status.code(), Some(1), "an error exits with 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "speech.wav is a WAV file, not Ogg Opus",
        "--send needs an Ogg Opus file",
        "opusenc in.wav out.opus",
        "ffmpeg -i in.wav -c:a libopus out.opus",
    ] {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
    assert!(
        !stderr.contains("capture pattern"),
        "no Ogg parser jargon: {stderr}"
    );
    // stdout stays JSON lines: one error event.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let event: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(event["event"], "error");
    assert!(event["errMsg"].as_str().unwrap().contains("Ogg Opus file"));

    // Not Ogg at all, and Ogg without Opus, get the same advice.
    let text = dir.0.join("notes.opus");
    std::fs::write(&text, "hello").unwrap();
    let stderr = String::from_utf8_lossy(&join_sending(&text).stderr).to_string();
    assert!(stderr.contains("notes.opus is not an Ogg file"), "{stderr}");
    assert!(stderr.contains("opusenc in.wav out.opus"), "{stderr}");
    let vorbis = dir.0.join("music.ogg");
    let mut page = b"OggS\0\x02".to_vec();
    page.resize(28, 0);
    page.extend_from_slice(b"\x01vorbis");
    std::fs::write(&vorbis, page).unwrap();
    let stderr = String::from_utf8_lossy(&join_sending(&vorbis).stderr).to_string();
    assert!(
        stderr.contains("music.ogg is an Ogg file without an Opus stream"),
        "{stderr}"
    );
    // A missing file names itself.
    let stderr =
        String::from_utf8_lossy(&join_sending(&dir.0.join("missing.opus")).stderr).to_string();
    assert!(stderr.contains("missing.opus"), "{stderr}");
}

#[test]
fn a_server_that_is_not_a_url_is_refused_with_the_accepted_forms() {
    let out = client(&[
        "join",
        "--server",
        "127.0.0.1:7880",
        "--app-id",
        "wx1",
        "--open-id",
        "a",
        "--group-id",
        "g",
        "--session-key",
        "k",
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("http://HOST:PORT") && stderr.contains("ws://HOST:PORT/ws"),
        "{stderr}"
    );
}

/// The option lines of a `--help` text: (flag, description), continuation lines joined.
fn help_options(help: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_options = line == "Options:";
            continue;
        }
        if !in_options || line.trim().is_empty() {
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            let flag = trimmed
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
                .unwrap_or(trimmed)
                .to_string();
            // The description starts after the first run of two or more spaces.
            let rest = trimmed
                .split_once("  ")
                .map(|(_, d)| d.trim())
                .unwrap_or("");
            options.push((flag, rest.to_string()));
        } else if let Some(last) = options.last_mut() {
            last.1.push(' ');
            last.1.push_str(trimmed);
        }
    }
    options
}

#[test]
fn every_join_flag_has_a_description_and_its_default() {
    let out = client(&["join", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let options = help_options(&help);
    assert!(options.len() >= 16, "{help}");
    let required = ["--app-id", "--open-id", "--group-id"];
    for (flag, desc) in &options {
        if flag == "--help" || flag == "--version" {
            continue;
        }
        assert!(desc.len() > 10, "{flag} has no description: {help}");
        if required.contains(&flag.as_str()) {
            assert!(desc.contains("(required)"), "{flag}: {desc}");
        } else {
            assert!(
                desc.contains("[default: "),
                "{flag} shows no default: {desc}"
            );
        }
    }
    for (flag, default) in [
        ("--server", "[default: http://127.0.0.1:7880]"),
        ("--bind-ip", "[default: 127.0.0.1]"),
        ("--room-type", "[default: voice]"),
    ] {
        let (_, desc) = options.iter().find(|(f, _)| f == flag).unwrap();
        assert!(desc.contains(default), "{flag}: {desc}");
    }
}
