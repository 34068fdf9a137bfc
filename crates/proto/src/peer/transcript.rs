//! The handshake transcript and its MAC.

use hmac::digest::Key;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::peer_message::{PEER_MAC_BYTES, PEER_NONCE_BYTES};

type HmacSha256 = Hmac<Sha256>;

/// SHA-256's block size: HMAC keys are hashed down (if longer) and zero-padded to it.
const HMAC_KEY_BLOCK_BYTES: usize = 64;

/// Domain separation: no other MAC made with the cluster secret can start this way.
const TRANSCRIPT_LABEL: &[u8] = b"replikv peer auth v1\0";

/// Which side of the handshake a MAC proves: the one that connected or the one that accepted.
///
/// The role is part of the MAC input, so each side's `Auth` differs and a peer cannot pass
/// by sending back the tag it was just sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthRole {
    /// The connecting node, which sent `Hello`.
    Client,
    /// The accepting node, which sent `Challenge`.
    Server,
}

impl AuthRole {
    fn code(self) -> u8 {
        match self {
            AuthRole::Client => 1,
            AuthRole::Server => 2,
        }
    }
}

/// Everything one handshake said, which both `Auth` MACs cover: both nonces bind the proof to
/// this link (no replay), both node ids and the cluster name bind it to these parties, and the
/// version to the protocol they agreed.
///
/// Both sides build the same transcript from `Hello` and `Challenge`, changing only
/// `prover`: the client MACs with `prover: Client` and checks the server's tag with
/// `prover: Server`, and the server the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transcript<'a> {
    /// The side whose `Auth` this MAC is.
    pub prover: AuthRole,
    /// `Hello::protocol_version`.
    pub protocol_version: u16,
    /// `Hello::cluster_name`.
    pub cluster_name: &'a str,
    /// `Hello::node_id`.
    pub client_node_id: &'a str,
    /// `Hello::nonce`.
    pub client_nonce: &'a [u8; PEER_NONCE_BYTES],
    /// `Challenge::node_id`.
    pub server_node_id: &'a str,
    /// `Challenge::nonce`.
    pub server_nonce: &'a [u8; PEER_NONCE_BYTES],
}

impl Transcript<'_> {
    /// Feeds the MAC input to `mac`: the label, then each field in declaration order, integers
    /// little-endian, strings prefixed with their byte length as u64 LE so that no two
    /// transcripts share an encoding.
    fn feed(&self, mac: &mut HmacSha256) {
        mac.update(TRANSCRIPT_LABEL);
        mac.update(&[self.prover.code()]);
        mac.update(&self.protocol_version.to_le_bytes());
        feed_str(mac, self.cluster_name);
        feed_str(mac, self.client_node_id);
        mac.update(self.client_nonce);
        feed_str(mac, self.server_node_id);
        mac.update(self.server_nonce);
    }
}

fn feed_str(mac: &mut HmacSha256, text: &str) {
    mac.update(&(text.len() as u64).to_le_bytes());
    mac.update(text.as_bytes());
}

/// HMAC-SHA256 keyed with `secret`, any length (RFC 2104 key preparation, done here so that
/// building the MAC has no error path).
fn keyed(secret: &[u8]) -> HmacSha256 {
    let mut block = [0u8; HMAC_KEY_BLOCK_BYTES];
    if secret.len() > HMAC_KEY_BLOCK_BYTES {
        block[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        block[..secret.len()].copy_from_slice(secret);
    }
    HmacSha256::new(&Key::<HmacSha256>::from(block))
}

/// The `Auth` tag proving knowledge of the cluster `secret` for this handshake: HMAC-SHA256
/// over the transcript's encoding. The secret itself never goes on the wire.
#[must_use]
pub fn auth_mac(secret: &[u8], transcript: &Transcript<'_>) -> [u8; PEER_MAC_BYTES] {
    let mut mac = keyed(secret);
    transcript.feed(&mut mac);
    mac.finalize().into_bytes().into()
}

/// Whether `mac` is the tag [`auth_mac`] gives for `secret` and `transcript`, compared in
/// constant time so that timing does not reveal how many leading bytes matched.
#[must_use]
pub fn verify_mac(secret: &[u8], transcript: &Transcript<'_>, mac: &[u8; PEER_MAC_BYTES]) -> bool {
    let mut expected = keyed(secret);
    transcript.feed(&mut expected);
    expected.verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
            .collect()
    }

    /// The key preparation in `keyed` matches HMAC-SHA256 as RFC 4231 defines it, for short,
    /// block-sized-or-less and longer-than-a-block keys (test cases 1, 2, 6 and 7).
    #[test]
    fn keyed_hmac_matches_rfc_4231_vectors() {
        let long_key = [0xaa; 131];
        let cases: [(&[u8], &[u8], &str); 4] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &long_key,
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            let mut mac = keyed(key);
            mac.update(data);
            assert_eq!(
                mac.finalize().into_bytes().to_vec(),
                hex(expected),
                "key {key:?}"
            );
        }
    }
}
