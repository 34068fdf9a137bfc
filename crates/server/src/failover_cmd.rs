//! `replikv failover`: hand leadership over to a chosen replica with no acknowledged write
//! lost, from the command line.
//!
//! It asks any node (`--via`) who leads (`SENTINEL get-master-addr-by-name`), finds the target
//! among the leader's replicas (`SENTINEL replicas`: by node id, or by client address), and
//! sends the leader `FAILOVER TO <ip> <port> TIMEOUT <ms>`. The leader pauses writes, waits
//! until the target holds every entry, and hands over (through the control plane when it
//! runs one); the command prints the new leader once the hand-over is done.

use crate::config::Upstream;
use crate::forward;
use clap::Args;
use replikv_proto::Frame;

/// `replikv failover` settings.
#[derive(Args, Debug, Clone)]
pub struct FailoverArgs {
    /// Any node of the cluster, by client address.
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub via: String,
    /// The replica to lead: its node id (as `SENTINEL replicas` lists it, `runid`) or its
    /// client address `HOST:PORT` [default: the most up-to-date in-sync replica].
    #[arg(long)]
    pub to: Option<String>,
    /// How long the target may take to catch up before the switchover is given up.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// The cluster's name (`--cluster-name` of the nodes).
    #[arg(long, default_value = "replikv")]
    pub cluster_name: String,
    /// The nodes' password (`requirepass`).
    #[arg(long, env = "REPLIKV_PASSWORD")]
    pub password: Option<String>,
}

/// Runs the switchover; returns the new leader's address.
///
/// # Errors
/// No leader is known, the target is not one of its replicas, or the leader refused or gave
/// the switchover up (its message).
pub async fn run(args: &FailoverArgs) -> Result<Upstream, String> {
    let via: Upstream = args.via.parse()?;
    let pass = args.password.as_deref();
    let leader = match forward::command(
        &via,
        pass,
        &["SENTINEL", "get-master-addr-by-name", &args.cluster_name],
    )
    .await
    .map_err(|e| format!("{via}: {e}"))?
    {
        Frame::Array(items) => match (items.first(), items.get(1)) {
            (Some(host), Some(port)) => Upstream {
                host: text(host),
                port: text(port)
                    .parse()
                    .map_err(|_| format!("{via} named a leader with a bad port"))?,
            },
            _ => return Err(format!("{via} named no leader")),
        },
        other => return Err(format!("{via} knows no leader: {}", describe(&other))),
    };
    let mut failover = vec!["FAILOVER".to_string()];
    if let Some(to) = &args.to {
        let target =
            wait_for_replica(&leader, pass, &args.cluster_name, to, args.timeout_ms).await?;
        failover.extend(["TO".into(), target.host, target.port.to_string()]);
    }
    failover.extend(["TIMEOUT".into(), args.timeout_ms.to_string()]);
    let words: Vec<&str> = failover.iter().map(String::as_str).collect();
    match forward::command(&leader, pass, &words).await {
        Ok(Frame::Simple(_)) => {}
        Ok(other) => return Err(format!("the leader {leader}: {}", describe(&other))),
        Err(e) => return Err(format!("the leader {leader}: {e}")),
    }
    // The new leader, as the old one now names it.
    match forward::command(
        &leader,
        pass,
        &["SENTINEL", "get-master-addr-by-name", &args.cluster_name],
    )
    .await
    {
        Ok(Frame::Array(items)) if items.len() == 2 => Ok(Upstream {
            host: text(&items[0]),
            port: text(&items[1]).parse().unwrap_or(0),
        }),
        _ => Err("the switchover is done, but the old leader names no new one yet".into()),
    }
}

/// [`find_replica`], waiting up to `timeout_ms` for the target to be connected: right after
/// a failover the replicas are still reconnecting to their new leader.
async fn wait_for_replica(
    leader: &Upstream,
    pass: Option<&str>,
    name: &str,
    to: &str,
    timeout_ms: u64,
) -> Result<Upstream, String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        match find_replica(leader, pass, name, to).await {
            Ok(Some(found)) => return Ok(found),
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Ok(None) => {
                return Err(format!(
                    "`{to}` is not a connected replica of the leader {leader} (neither a node id nor an address it lists, within {timeout_ms} ms)"
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

/// The leader's connected replica named `to` (node id or `host:port`), by the address it is
/// listed at; `None` if it lists none such.
async fn find_replica(
    leader: &Upstream,
    pass: Option<&str>,
    name: &str,
    to: &str,
) -> Result<Option<Upstream>, String> {
    let listed = forward::command(leader, pass, &["SENTINEL", "replicas", name])
        .await
        .map_err(|e| format!("the leader {leader}: {e}"))?;
    let Frame::Array(replicas) = listed else {
        return Err(format!("the leader {leader}: {}", describe(&listed)));
    };
    let wanted: Option<Upstream> = to.parse().ok();
    for r in &replicas {
        let fields = fields(r);
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (Some(ip), Some(port), Some(id)) = (get("ip"), get("port"), get("runid")) else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let by_addr = wanted
            .as_ref()
            .is_some_and(|w| w.host == ip && w.port == port);
        let connected = get("master-link-status").as_deref() == Some("ok");
        if (id == to || by_addr) && connected {
            return Ok(Some(Upstream { host: ip, port }));
        }
    }
    Ok(None)
}

/// A Sentinel reply's field pairs, from a RESP3 map or a RESP2 flat array.
fn fields(frame: &Frame) -> Vec<(String, String)> {
    match frame {
        Frame::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Frame::Array(items) => items
            .chunks(2)
            .filter_map(|c| match c {
                [k, v] => Some((text(k), text(v))),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn text(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Simple(s) | Frame::Error(s) => s.clone(),
        Frame::Integer(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Error(e) => e.clone(),
        other => format!("unexpected reply {}", text(other)),
    }
}
