//! Where a caller is: their address (the TCP peer, or what a trusted proxy says in
//! `X-Forwarded-For`), and whether it lies in an AWS region according to AWS's published
//! `ip-ranges.json` (a file the operator refreshes; re-read when it changes, never fetched).
//! A leaf: it knows HTTP requests and IP networks, nothing of the service.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

/// Who may speak for the client in `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted: Vec<IpNet>,
    /// Believe any peer's last entry (`server.trust_x_forwarded_for`, for a proxy that is
    /// the only way in).
    pub any: bool,
}

impl Proxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.any || self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    /// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further
    /// left were written by whoever the client is, and prove nothing).
    pub fn client(&self, req: &actix_web::HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .rev();
        for hop in hops.by_ref() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // Garbage where an address should be: nothing left of it can be believed.
                return peer;
            };
            if self.any || !self.trusts(ip) {
                return ip;
            }
        }
        peer
    }
}

/// Where a caller is, relative to a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    InRegion,
    OutOfRegion,
    /// No ranges file, or it names no network of that region.
    Unknown,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InRegion => "in_region",
            Self::OutOfRegion => "out_of_region",
            Self::Unknown => "unknown",
        }
    }
}

/// One region's networks.
/// A region's addresses as sorted, disjoint intervals (first, last): a lookup is a binary
/// search, a few dozen instructions on every placed request.
#[derive(Default)]
struct Networks {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// `ranges` sorted, with overlapping and adjacent intervals joined.
fn disjoint<T: Ord + Copy>(mut ranges: Vec<(T, T)>, next: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some(prev) if next(prev.1).is_none_or(|after| first <= after) => {
                prev.1 = prev.1.max(last);
            }
            _ => out.push((first, last)),
        }
    }
    out
}

/// Whether an interval of `ranges` (sorted, disjoint) holds `x`.
fn holds<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The last interval that starts at or before `x`.
    let after = ranges.partition_point(|&(first, _)| first <= x);
    after > 0 && ranges.get(after - 1).is_some_and(|&(_, last)| x <= last)
}

/// AWS's published ranges, by region.
#[derive(Default)]
pub struct Ranges {
    by_region: HashMap<String, Networks, foldhash::fast::RandomState>,
    /// When AWS made this file (`createDate`), as it says.
    pub created: String,
    pub prefixes: usize,
}

#[derive(Deserialize)]
struct Published {
    #[serde(rename = "createDate", default)]
    create_date: String,
    prefixes: Vec<V4>,
    #[serde(default)]
    ipv6_prefixes: Vec<V6>,
}

#[derive(Deserialize)]
struct V4 {
    ip_prefix: Ipv4Net,
    region: String,
}

#[derive(Deserialize)]
struct V6 {
    ipv6_prefix: Ipv6Net,
    region: String,
}

impl Ranges {
    /// The file's text, in AWS's format (`prefixes[].ip_prefix`, `ipv6_prefixes[].ipv6_prefix`,
    /// each with its `region`; every service counts: any of them is in the region).
    pub fn parse(text: &str) -> Result<Self, String> {
        let published: Published =
            serde_json::from_str(text).map_err(|e| format!("not AWS's ip-ranges.json: {e}"))?;
        let mut by_region: HashMap<String, Networks, foldhash::fast::RandomState> =
            HashMap::default();
        let prefixes = published.prefixes.len() + published.ipv6_prefixes.len();
        for p in published.prefixes {
            let net = p.ip_prefix;
            let interval = (u32::from(net.network()), u32::from(net.broadcast()));
            by_region.entry(p.region).or_default().v4.push(interval);
        }
        for p in published.ipv6_prefixes {
            let net = p.ipv6_prefix;
            let interval = (u128::from(net.network()), u128::from(net.broadcast()));
            by_region.entry(p.region).or_default().v6.push(interval);
        }
        for n in by_region.values_mut() {
            n.v4 = disjoint(std::mem::take(&mut n.v4), |x| x.checked_add(1));
            n.v6 = disjoint(std::mem::take(&mut n.v6), |x| x.checked_add(1));
        }
        Ok(Self {
            by_region,
            created: published.create_date,
            prefixes,
        })
    }

    pub fn placement(&self, ip: IpAddr, region: &str) -> Placement {
        let Some(n) = self.by_region.get(region) else {
            return Placement::Unknown;
        };
        let inside = match ip {
            IpAddr::V4(v4) => holds(&n.v4, u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => holds(&n.v4, u32::from(v4)),
                None => holds(&n.v6, u128::from(v6)),
            },
        };
        if inside {
            Placement::InRegion
        } else {
            Placement::OutOfRegion
        }
    }
}

/// The ranges file, re-read when it changes.
pub struct RangesFile {
    path: PathBuf,
    /// Read on every placed request: a lock-free load.
    current: arc_swap::ArcSwap<Ranges>,
    /// The modification time last read (or last found unreadable).
    modified: Mutex<Option<SystemTime>>,
}

impl RangesFile {
    /// Read at startup: a file that is missing or not AWS's format stops startup.
    pub fn open(path: PathBuf) -> Result<Arc<Self>, String> {
        let (modified, ranges) = Self::read(&path)?;
        Ok(Arc::new(Self {
            path,
            current: arc_swap::ArcSwap::from_pointee(ranges),
            modified: Mutex::new(modified),
        }))
    }

    fn read(path: &std::path::Path) -> Result<(Option<SystemTime>, Ranges), String> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok((modified, Ranges::parse(&text)?))
    }

    pub fn ranges(&self) -> arc_swap::Guard<Arc<Ranges>> {
        self.current.load()
    }

    /// Re-read the file every `every` when its modification time changed; a file that no
    /// longer reads keeps the ranges in use (and says so in the log).
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let modified = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            let Ok(mut known) = self.modified.lock() else {
                continue;
            };
            if modified == *known {
                continue;
            }
            *known = modified;
            drop(known);
            match Self::read(&self.path) {
                Ok((_, ranges)) => {
                    tracing::info!(file = %self.path.display(), created = %ranges.created, prefixes = ranges.prefixes, "AWS ip ranges reloaded");
                    self.current.store(Arc::new(ranges));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AWS ip ranges not reloaded; the previous ones stay");
                }
            }
        }
    }
}

/// The response header that warns about a credential (`stsvend-warning`).
pub const WARNING_HEADER: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("stsvend-warning");

/// What a credential issued to a caller outside its region(s) carries in `WARNING_HEADER`:
/// the body stays what clients parse, the header is what they can show. The same text for
/// every caller of a region (where they are is in `/scope`'s hint), so it is made once.
pub fn out_of_region_warning(regions: &[&str]) -> actix_web::http::header::HeaderValue {
    let regions = regions.join(", ");
    actix_web::http::header::HeaderValue::try_from(format!(
        "out_of_region: your address is outside AWS {regions}; these credentials work only in {regions}"
    ))
    .unwrap_or_else(|_| actix_web::http::header::HeaderValue::from_static("out_of_region"))
}

/// Where callers are: their address, and (with AWS's ranges) their region.
pub struct Network {
    pub proxies: Proxies,
    ranges: Option<Arc<RangesFile>>,
}

impl Network {
    pub fn new(proxies: Proxies, ranges: Option<Arc<RangesFile>>) -> Self {
        Self { proxies, ranges }
    }

    /// Whether `ip` is in `region`; `Unknown` without a ranges file.
    pub fn placement(&self, ip: IpAddr, region: &str) -> Placement {
        match &self.ranges {
            Some(file) => file.ranges().placement(ip, region),
            None => Placement::Unknown,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"{"syncToken":"1","createDate":"2026-12-01-00-00-00","prefixes":[
        {"ip_prefix":"3.5.76.0/22","region":"us-west-2","service":"AMAZON","network_border_group":"us-west-2"},
        {"ip_prefix":"3.5.80.0/21","region":"us-west-2","service":"EC2","network_border_group":"us-west-2"},
        {"ip_prefix":"52.95.0.0/20","region":"us-east-1","service":"S3","network_border_group":"us-east-1"}],
        "ipv6_prefixes":[{"ipv6_prefix":"2600:1f14::/35","region":"us-west-2","service":"EC2","network_border_group":"us-west-2"}]}"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn request(peer: &str, forwarded: Option<&str>) -> actix_web::HttpRequest {
        let mut r = actix_web::test::TestRequest::default().peer_addr(peer.parse().unwrap());
        if let Some(f) = forwarded {
            r = r.insert_header(("x-forwarded-for", f));
        }
        r.to_http_request()
    }

    /// The intervals hold exactly the addresses some prefix holds, overlapping, nested,
    /// adjacent and at the ends of the address space included.
    #[test]
    fn intervals_hold_what_the_prefixes_hold() {
        let nets: Vec<Ipv4Net> = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.255.255.0/24",
            "11.0.0.0/8",
            "12.0.0.0/31",
            "12.0.0.3/32",
            "0.0.0.0/30",
            "255.255.255.254/31",
            "192.168.0.0/23",
            "192.168.1.128/25",
        ]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
        let ranges = disjoint(
            nets.iter()
                .map(|n| (u32::from(n.network()), u32::from(n.broadcast())))
                .collect(),
            |x| x.checked_add(1),
        );
        let mut probes: Vec<u32> = vec![0, 1, 3, 4, u32::MAX, u32::MAX - 1, u32::MAX - 2];
        for n in &nets {
            let (a, b) = (u32::from(n.network()), u32::from(n.broadcast()));
            probes.extend([a, b, a.wrapping_sub(1), b.wrapping_add(1)]);
        }
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            probes.push(x);
        }
        for p in probes {
            let ip = std::net::Ipv4Addr::from(p);
            assert_eq!(
                holds(&ranges, p),
                nets.iter().any(|n| n.contains(&ip)),
                "{ip}"
            );
        }
    }

    #[test]
    fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxies = Proxies {
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            any: false,
        };
        // From a trusted proxy: the right-most entry that is not a proxy.
        let via = request("10.1.2.3:4000", Some("198.51.100.7, 3.5.77.9, 10.9.9.9"));
        assert_eq!(proxies.client(&via), ip("3.5.77.9"));
        // From anyone else: the header is theirs to forge, and ignored.
        let forged = request("203.0.113.5:4000", Some("3.5.77.9"));
        assert_eq!(proxies.client(&forged), ip("203.0.113.5"));
        // A proxy without the header, or with garbage in it: the peer.
        assert_eq!(proxies.client(&request("10.1.2.3:1", None)), ip("10.1.2.3"));
        assert_eq!(
            proxies.client(&request("10.1.2.3:1", Some("not-an-ip, 3.5.77.9"))),
            ip("3.5.77.9")
        );
        assert_eq!(
            proxies.client(&request("10.1.2.3:1", Some("3.5.77.9, junk"))),
            ip("10.1.2.3")
        );
        // Nobody trusted: always the peer.
        let none = Proxies::default();
        assert_eq!(none.client(&via), ip("10.1.2.3"));
        // Any peer trusted (server.trust_x_forwarded_for): its last entry.
        let any = Proxies {
            trusted: vec![],
            any: true,
        };
        assert_eq!(any.client(&via), ip("10.9.9.9"));
    }

    #[test]
    fn addresses_are_placed_by_the_published_ranges_of_their_region() {
        let r = Ranges::parse(FIXTURE).unwrap();
        assert_eq!(r.prefixes, 4);
        assert_eq!(
            r.placement(ip("3.5.77.9"), "us-west-2"),
            Placement::InRegion
        );
        assert_eq!(
            r.placement(ip("3.5.87.255"), "us-west-2"),
            Placement::InRegion
        );
        assert_eq!(
            r.placement(ip("3.5.88.0"), "us-west-2"),
            Placement::OutOfRegion
        );
        assert_eq!(
            r.placement(ip("52.95.1.1"), "us-west-2"),
            Placement::OutOfRegion
        );
        assert_eq!(
            r.placement(ip("52.95.1.1"), "us-east-1"),
            Placement::InRegion
        );
        assert_eq!(
            r.placement(ip("2600:1f14::1"), "us-west-2"),
            Placement::InRegion
        );
        assert_eq!(
            r.placement(ip("::ffff:3.5.77.9"), "us-west-2"),
            Placement::InRegion
        );
        assert_eq!(
            r.placement(ip("3.5.77.9"), "eu-north-1"),
            Placement::Unknown
        );
        assert!(Ranges::parse("{}").is_err());
        assert!(
            Ranges::parse(r#"{"prefixes":[{"ip_prefix":"3.5.76.0/33","region":"x"}]}"#).is_err()
        );
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_ranges_in_use() {
        let dir = std::env::temp_dir().join(format!("stsvend-ranges-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ip-ranges.json");
        std::fs::write(&path, FIXTURE).unwrap();
        let file = RangesFile::open(path.clone()).unwrap();
        tokio::spawn(file.clone().watch(Duration::from_millis(20)));
        assert_eq!(
            file.ranges().placement(ip("3.5.77.9"), "us-west-2"),
            Placement::InRegion
        );
        let moved = FIXTURE.replace("3.5.76.0/22", "198.51.100.0/24");
        tokio::time::sleep(Duration::from_millis(30)).await;
        std::fs::write(&path, moved).unwrap();
        let placed_new = async {
            while file.ranges().placement(ip("198.51.100.9"), "us-west-2") != Placement::InRegion {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), placed_new)
            .await
            .unwrap();
        assert_eq!(
            file.ranges().placement(ip("3.5.77.9"), "us-west-2"),
            Placement::OutOfRegion
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        std::fs::write(&path, "{ not json").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            file.ranges().placement(ip("198.51.100.9"), "us-west-2"),
            Placement::InRegion
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
