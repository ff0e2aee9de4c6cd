//! Signaling frames as the server reads them from a client, and as a client reads them from
//! the server.

use voipchat_proto::signal::MAX_FRAME_BYTES;
use voipchat_proto::{ClientMsg, ErrorCode, ServerMsg};

/// A client frame: either a message that serializes back to a frame the parser takes the
/// same way, or a refusal with one of the parser's own codes and a one-line reason.
pub fn client_frame(data: &[u8]) {
    let frame = String::from_utf8_lossy(data);
    match ClientMsg::parse(&frame) {
        Ok(msg) => {
            let json = msg.to_json();
            let again = ClientMsg::parse(&json)
                .unwrap_or_else(|f| panic!("{json} parsed once, then refused: {}", f.detail));
            assert_eq!(again.to_json(), json, "a parsed frame serializes stably");
            if let ClientMsg::Join(join) = &msg {
                join.validate().expect("a parsed join is valid");
            }
        }
        Err(f) => {
            assert!(
                matches!(
                    f.code,
                    ErrorCode::MalformedMessage
                        | ErrorCode::MessageTooLarge
                        | ErrorCode::UnexpectedMessage
                        | ErrorCode::InvalidField
                        | ErrorCode::InvalidSdp
                ),
                "{:?} is not a parser's code",
                f.code
            );
            assert_one_line(&f.detail);
            if frame.len() > MAX_FRAME_BYTES {
                assert_eq!(f.code, ErrorCode::MessageTooLarge);
            }
        }
    }
}

/// A server frame as the Rust client reads it: parsed or refused, never a panic, and what
/// parses serializes back to a frame that parses.
pub fn server_frame(data: &[u8]) {
    let frame = String::from_utf8_lossy(data);
    if let Ok(msg) = ServerMsg::parse(&frame) {
        let json = msg.to_json();
        let again = ServerMsg::parse(&json)
            .unwrap_or_else(|f| panic!("{json} parsed once, then refused: {}", f.detail));
        assert_eq!(again.to_json(), json, "a parsed frame serializes stably");
    }
}

/// An errMsg is one line: a client shows it as it is.
pub(crate) fn assert_one_line(detail: &str) {
    assert!(
        !detail.contains(['\n', '\r']),
        "errMsg spans lines: {detail:?}"
    );
}
