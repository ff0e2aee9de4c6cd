//! A RED (RFC 2198) payload, as a publisher's audio packet brings it to the forwarding path.

use voipchat_core::red::{encode, Red};

/// Any bytes parse or are refused without a panic. What parses is blocks that lie inside the
/// payload and cover it exactly: they encode back to the same bytes, the primary range is
/// the primary block, and renumbering gives a payload of the same blocks with the new type.
pub fn red_payload(data: &[u8]) {
    let Ok(red) = Red::parse(data) else {
        return;
    };
    let redundant: Vec<(u8, u16, &[u8])> = red
        .redundant()
        .map(|b| (b.pt, b.timestamp_offset, b.data))
        .collect();
    let primary = red.primary();
    assert_eq!(
        encode(&redundant, primary.pt, primary.data),
        data,
        "the blocks encode back to the payload"
    );
    assert_eq!(&data[red.primary_range()], primary.data);
    let pt = data[data.len() / 2] & 0x7f;
    let renumbered = red.renumbered(pt);
    let again = Red::parse(&renumbered).expect("a renumbered payload parses");
    assert!(again.all_of_type(pt));
    assert_eq!(again.primary().data, primary.data);
    let blocks: Vec<(u16, &[u8])> = again
        .redundant()
        .map(|b| (b.timestamp_offset, b.data))
        .collect();
    let before: Vec<(u16, &[u8])> = redundant.iter().map(|(_, o, d)| (*o, *d)).collect();
    assert_eq!(blocks, before);
}
