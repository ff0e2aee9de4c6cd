//! Interop with Debian's opus-tools: a file made by `opusenc` reads with `read_ogg_opus`,
//! and what `OggOpusWriter` writes back decodes with `opusdec`. Skipped (with a message)
//! where sox, opusenc or opusdec are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use voipchat_client::{read_ogg_opus, OggOpusWriter};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--help")
        .output()
        .map(|_| true)
        .unwrap_or(false)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("voipchat-client-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes of PCM in a canonical WAV file (the `data` chunk's size).
fn wav_data_len(path: &Path) -> usize {
    let b = std::fs::read(path).unwrap();
    let mut i = 12;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
        if id == b"data" {
            return len.min(b.len() - i - 8);
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

#[test]
fn opusenc_file_reads_and_rewritten_file_decodes_with_opusdec() {
    if !(have("sox") && have("opusenc") && have("opusdec")) {
        eprintln!("SKIPPED: sox, opusenc and opusdec are needed (apt-get install sox opus-tools)");
        return;
    }
    let dir = TempDir::new("opus-tools");
    let wav = dir.path("tone.wav");
    let enc = dir.path("tone.opus");
    let rewritten = dir.path("rewritten.opus");
    let dec = dir.path("decoded.wav");

    // Three seconds: one of tone, one of silence, one of tone.
    run(Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "1", "-b", "16"])
        .arg(&wav)
        .args([
            "synth", "1", "sine", "440", "vol", "0.5", ":", "synth", "1", "sine", "440", "vol",
            "0", ":", "synth", "1", "sine", "660", "vol", "0.5",
        ]));
    run(Command::new("opusenc").arg("--quiet").arg(&wav).arg(&enc));

    let packets = read_ogg_opus(&enc).unwrap();
    let total: Duration = packets.iter().map(|p| p.duration).sum();
    // opusenc emits 20 ms packets by default, and pads the end up to a whole packet plus
    // the encoder delay.
    assert!(packets
        .iter()
        .all(|p| p.duration == Duration::from_millis(20)));
    assert!(
        total >= Duration::from_secs(3) && total <= Duration::from_millis(3_100),
        "{total:?} in {} packets",
        packets.len()
    );

    let mut w = OggOpusWriter::create(&rewritten).unwrap();
    for p in &packets {
        w.write_opus(&p.data).unwrap();
    }
    let granule = w.granule_position();
    w.finish().unwrap();

    // The rewritten file reads back packet for packet.
    assert_eq!(read_ogg_opus(&rewritten).unwrap(), packets);

    run(Command::new("opusdec")
        .arg("--quiet")
        .arg(&rewritten)
        .arg(&dec));
    // 16-bit mono at 48 kHz: granule minus pre-skip samples.
    let expected = (granule - 312) as usize * 2;
    let got = wav_data_len(&dec);
    assert_eq!(got, expected, "decoded {got} bytes, expected {expected}");
}
