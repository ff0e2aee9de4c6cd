//! The signature's input: the four signed fields and the key, as a join brings them.

use voipchat_auth::{sign, signing_string, verify, VerifyPolicy};
use voipchat_proto::{AppId, GroupId, JoinRequest, MuteConfig, OpenId, RoomType, Secret};

use crate::Input;

/// Any fields sign without a panic; the signing string is the fields sorted as JavaScript
/// sorts strings (by UTF-16 code units, checked here the slow way) and joined; the signature
/// made over them verifies in either hex case; any other signature text, or a time outside
/// the window, is refused.
pub fn signature(data: &[u8]) {
    let mut input = Input::new(data);
    let app_id = input.text(200);
    let group_id = input.text(200);
    let nonce = input.text(200);
    let time_stamp = input.u64() % (1 << 53);
    let key = Secret::new(input.text(64));
    let given = input.text(80);

    let ts = time_stamp.to_string();
    let mut parts: Vec<&str> = vec![&app_id, &group_id, &nonce, &ts];
    parts.sort_by_key(|p| p.encode_utf16().collect::<Vec<u16>>());
    let joined = signing_string(&app_id, &group_id, &nonce, time_stamp);
    assert_eq!(joined, parts.concat(), "sorted by UTF-16 code units");
    // The order the fields come in does not matter.
    assert_eq!(
        joined,
        signing_string(&nonce, &app_id, &group_id, time_stamp)
    );

    let policy = VerifyPolicy::default();
    let signature = sign(&app_id, &group_id, &nonce, time_stamp, &key);
    assert_eq!(signature.len(), 64);
    let req = JoinRequest {
        app_id: AppId::new(app_id),
        open_id: OpenId::new("fuzz"),
        group_id: GroupId::new(group_id),
        nonce_str: nonce,
        time_stamp,
        signature,
        room_type: RoomType::Voice,
        mute_config: MuteConfig::default(),
        sdp: String::new(),
    };
    verify(&req, &key, time_stamp, &policy).expect("its own signature verifies");
    let upper = JoinRequest {
        signature: req.signature.to_uppercase(),
        ..req.clone()
    };
    verify(&upper, &key, time_stamp, &policy).expect("uppercase hex verifies too");
    if !given.eq_ignore_ascii_case(&req.signature) {
        let other = JoinRequest {
            signature: given,
            ..req.clone()
        };
        assert!(verify(&other, &key, time_stamp, &policy).is_err());
    }
    // Outside the window, however far (no overflow at the extremes): refused.
    let later = time_stamp + policy.window_secs + 1 + input.u64() % (1 << 40);
    assert!(verify(&req, &key, later, &policy).is_err());
    assert!(verify(&req, &key, u64::MAX, &policy).is_err());
    if time_stamp > policy.window_secs {
        assert!(verify(&req, &key, 0, &policy).is_err());
    }
}
