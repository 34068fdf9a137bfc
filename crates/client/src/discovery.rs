//! Asking nodes who leads (`SENTINEL get-master-addr-by-name`) and which replicas the leader
//! has (`SENTINEL replicas`), and reading their answers.

use crate::config::ClientConfig;
use crate::connection::{encode_request, Connection};
use crate::leader_vote::NodeAnswer;
use bytes::BytesMut;
use replikv_proto::Frame;
use std::net::{IpAddr, SocketAddr};
use tokio::task::JoinSet;

/// Asks every node of `nodes` at once who leads, each within the config's node answer timeout;
/// returns the answers of those that answered in time (in no particular order).
pub(crate) async fn ask_all(nodes: &[String], config: &ClientConfig) -> Vec<NodeAnswer> {
    let mut questions = JoinSet::new();
    for addr in nodes {
        let addr = addr.clone();
        let config = config.clone();
        questions.spawn(async move {
            let timeout = config.node_answer_timeout();
            // A node that does not answer in time is left out of the vote.
            tokio::time::timeout(timeout, ask(&addr, &config))
                .await
                .ok()
                .flatten()
        });
    }
    let mut answers = Vec::with_capacity(nodes.len());
    while let Some(joined) = questions.join_next().await {
        // A question task cannot panic on a node's input; if one did, its node is left out.
        if let Ok(Some(answer)) = joined {
            answers.push(answer);
        }
    }
    answers
}

/// Asks one node who leads; `None` when it cannot be reached or gives no valid answer.
async fn ask(addr: &str, config: &ClientConfig) -> Option<NodeAnswer> {
    let mut conn = Connection::open(addr, config.password.as_deref(), config.reply_bytes_max)
        .await
        .ok()?;
    let mut request = BytesMut::new();
    encode_request(
        &mut request,
        &[
            b"SENTINEL".as_slice(),
            b"get-master-addr-by-name",
            config.cluster_name.as_bytes(),
        ],
    );
    conn.send(&request, 1).await.ok()?;
    let reply = conn.read_reply().await.ok()?;
    let leader = parse_leader_reply(&reply)?;
    Some(NodeAnswer {
        node: conn.peer(),
        leader,
    })
}

/// Asks the leader at `conn` for its replicas; empty when it cannot say.
pub(crate) async fn ask_replicas(conn: &mut Connection, cluster_name: &str) -> Option<Vec<String>> {
    let mut request = BytesMut::new();
    encode_request(
        &mut request,
        &[b"SENTINEL".as_slice(), b"replicas", cluster_name.as_bytes()],
    );
    conn.send(&request, 1).await.ok()?;
    let reply = conn.read_reply().await.ok()?;
    Some(parse_replicas(&reply))
}

/// The answer in a `SENTINEL get-master-addr-by-name` reply: `Some(Some(addr))` for
/// `[host, port]`, `Some(None)` for nil (the node knows no leader), `None` for anything else
/// (an error reply, a malformed address), which is not counted as an answer.
pub(crate) fn parse_leader_reply(reply: &Frame) -> Option<Option<String>> {
    match reply {
        Frame::Null => Some(None),
        Frame::Array(items) => match items.as_slice() {
            [host, port] => Some(Some(address(text(host)?, text(port)?)?)),
            _ => None,
        },
        _ => None,
    }
}

/// The addresses of the replicas in a `SENTINEL replicas` reply that are up (no `s_down`,
/// `o_down` or `disconnected` flag). Each replica is a map (RESP3) or a flat array of field,
/// value, ... (RESP2); entries without a usable `ip` and `port` are skipped.
pub(crate) fn parse_replicas(reply: &Frame) -> Vec<String> {
    let Frame::Array(list) = reply else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let fields = fields(entry)?;
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            let flags = get("flags").unwrap_or("");
            let down = flags
                .split(',')
                .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
            if down {
                return None;
            }
            address(get("ip")?, get("port")?)
        })
        .collect()
}

/// The field/value pairs of a map or a flat RESP2 array; `None` when it is neither.
fn fields(entry: &Frame) -> Option<Vec<(String, String)>> {
    match entry {
        Frame::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| Some((text(k)?.to_string(), text(v)?.to_string())))
            .collect(),
        Frame::Array(items) if items.len() % 2 == 0 => items
            .chunks_exact(2)
            .map(|pair| Some((text(&pair[0])?.to_string(), text(&pair[1])?.to_string())))
            .collect(),
        _ => None,
    }
}

fn text(frame: &Frame) -> Option<&str> {
    match frame {
        Frame::Bulk(b) | Frame::Verbatim(_, b) => std::str::from_utf8(b).ok(),
        Frame::Simple(s) => Some(s),
        _ => None,
    }
}

/// `host:port` in one spelling per address: an IP address as `SocketAddr` writes it
/// (`[::1]:7000` for IPv6), a name as given. `None` for an empty host or a bad port.
pub(crate) fn address(host: &str, port: &str) -> Option<String> {
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    if host.is_empty() {
        return None;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Some(match bare.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    })
}

/// `addr` (`host:port`) in the spelling [`address`] gives, or as given when it has no port.
pub(crate) fn normalize(addr: &str) -> String {
    addr.rsplit_once(':')
        .and_then(|(host, port)| address(host, port))
        .unwrap_or_else(|| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn leader_replies() {
        let named = Frame::Array(vec![bulk("127.0.0.1"), bulk("7001")]);
        assert_eq!(
            parse_leader_reply(&named),
            Some(Some("127.0.0.1:7001".to_string()))
        );
        let v6 = Frame::Array(vec![bulk("::1"), bulk("7001")]);
        assert_eq!(
            parse_leader_reply(&v6),
            Some(Some("[::1]:7001".to_string()))
        );
        assert_eq!(parse_leader_reply(&Frame::Null), Some(None));
        let error = Frame::Error("ERR unknown command 'SENTINEL'".into());
        assert_eq!(parse_leader_reply(&error), None);
        let bad_port = Frame::Array(vec![bulk("127.0.0.1"), bulk("x")]);
        assert_eq!(parse_leader_reply(&bad_port), None);
    }

    fn replica(ip: &str, port: &str, flags: &str) -> Vec<Frame> {
        vec![
            bulk("name"),
            bulk(&format!("{ip}:{port}")),
            bulk("ip"),
            bulk(ip),
            bulk("port"),
            bulk(port),
            bulk("flags"),
            bulk(flags),
        ]
    }

    #[test]
    fn replicas_in_resp2_and_resp3_without_the_down_ones() {
        let resp2 = Frame::Array(vec![
            Frame::Array(replica("127.0.0.1", "7001", "slave")),
            Frame::Array(replica("127.0.0.1", "7002", "slave,s_down")),
            Frame::Array(vec![bulk("odd")]),
        ]);
        assert_eq!(parse_replicas(&resp2), vec!["127.0.0.1:7001".to_string()]);
        let pairs = |items: Vec<Frame>| {
            let mut it = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Frame::Map(pairs)
        };
        let resp3 = Frame::Array(vec![
            pairs(replica("10.0.0.2", "7000", "slave")),
            pairs(replica("10.0.0.3", "7000", "slave")),
        ]);
        assert_eq!(
            parse_replicas(&resp3),
            vec!["10.0.0.2:7000".to_string(), "10.0.0.3:7000".to_string()]
        );
        assert!(parse_replicas(&Frame::Error("ERR no".into())).is_empty());
    }

    #[test]
    fn addresses_have_one_spelling() {
        assert_eq!(normalize("127.0.0.1:7000"), "127.0.0.1:7000");
        assert_eq!(normalize("[::1]:7000"), "[::1]:7000");
        assert_eq!(normalize("localhost:7000"), "localhost:7000");
        assert_eq!(normalize("nonsense"), "nonsense");
        assert_eq!(address("", "7000"), None);
        assert_eq!(address("h", "0"), None);
    }
}
