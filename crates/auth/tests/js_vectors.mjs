// Prints the join-signature test vectors as JavaScript itself computes them:
// [appId, groupId, nonceStr, String(timeStamp)].sort().join('') and
// crypto.createHmac('sha256', sessionKey).update(message).digest('hex').
//
// Regenerate with:  node crates/auth/tests/js_vectors.mjs > crates/auth/tests/js_vectors.json
// The Rust test `js_vectors_match_node` re-runs this script when node is installed.
import { createHmac } from 'node:crypto';

const inputs = [
  // The official WeChat example.
  ['wx20afc706a711eefc', '1559129713_672975982', '8AP6DT9ybtniUJfb', 1559129714, 'gDyVgzwa0mFz9uUP7M6GQQ=='],
  // Numbers sort as strings: "10" < "2".
  ['wx0000000000000001', '2', '10a', 10, 'gDyVgzwa0mFz9uUP7M6GQQ=='],
  // Prefixes: "a" < "ab" < "b".
  ['ab', 'a', 'b', 0, 'AAAAAAAAAAAAAAAAAAAAAA=='],
  // CJK group and nonce.
  ['wx20afc706a711eefc', '房间-一号', '随机字符串', 1700000000, 'gDyVgzwa0mFz9uUP7M6GQQ=='],
  // Astral (😀 = D83D DE00) sorts BEFORE U+E000 in JS, after it by scalar value / UTF-8.
  ['wx20afc706a711eefc', '\u{E000}', '😀', 1700000001, 'o0q0otL8aEzpcZL/FT9WsQ=='],
  // Fullwidth Ａ (U+FF21) vs mathematical bold 𝐀 (U+1D400 = D835 DC00).
  ['wx20afc706a711eefc', '\u{FF21}room', '𝐀nonce', 1700000002, 'o0q0otL8aEzpcZL/FT9WsQ=='],
  // Same leading character, difference after it.
  ['wx20afc706a711eefc', '😀\u{FFFF}', '😀😀', 1700000003, 'gDyVgzwa0mFz9uUP7M6GQQ=='],
  // Mixed: emoji, CJK, private use, ASCII, largest safe integer.
  ['wx😀', '中\u{E000}', '\u{FFFD}z', 9007199254740991, 'gDyVgzwa0mFz9uUP7M6GQQ=='],
  // Non-ASCII key: the key is the string's UTF-8 bytes.
  ['wx20afc706a711eefc', 'g', 'n', 1559129714, '密钥🔑key'],
];

const vectors = inputs.map(([appId, groupId, nonceStr, timeStamp, sessionKey]) => {
  const signingString = [appId, groupId, nonceStr, String(timeStamp)].sort().join('');
  const signature = createHmac('sha256', sessionKey).update(signingString).digest('hex');
  return { appId, groupId, nonceStr, timeStamp, sessionKey, signingString, signature };
});

process.stdout.write(JSON.stringify(vectors, null, 2) + '\n');
