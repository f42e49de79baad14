//! The few things the daemon does inside a pod network namespace (the interface name check,
//! default routes), each on a dedicated short-lived OS thread.
//!
//! `setns` changes the namespace of the calling thread only, so it never runs on a tokio worker
//! (every later task on that worker would silently act in the pod's namespace) nor on a pooled
//! blocking thread (the next task there would too). Each operation runs on a thread of its own,
//! enters the namespace, opens its socket there (a socket is bound to the namespace it was
//! created in), does its work (routes over rtnetlink on a current-thread runtime; the name check
//! with plain ioctls) and exits: there is nothing to restore. Async callers
//! ([`find_existing_links`], [`apply_default_routes`]) start that thread directly and await its
//! answer: one thread per operation, no blocking-pool hop before it.
use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use nix::sched::{CloneFlags, setns};
use rtnetlink::{Handle, RouteMessageBuilder};

const EEXIST: i32 = nix::libc::EEXIST;
const ESRCH: i32 = nix::libc::ESRCH;

/// Something done inside a network namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Checked before the path is opened: opening a FIFO would block the daemon's thread for
    /// good, opening some devices has side effects, and neither is ever a namespace.
    #[error("{path} is not a network namespace (filesystem type {fs_type:#x}, not nsfs)")]
    NotANetns { path: PathBuf, fs_type: u64 },
    #[error("entering network namespace {path}: {source}")]
    Setns { path: PathBuf, source: nix::Error },
    #[error("starting the netlink runtime: {0}")]
    Runtime(std::io::Error),
    #[error("opening a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("the network namespace thread panicked")]
    ThreadPanicked,
    #[error("starting a network namespace thread: {0}")]
    Thread(std::io::Error),
    #[error("interface {0:?} not found")]
    LinkNotFound(String),
    #[error("looking up interface {ifname:?}: {source}")]
    GetLink {
        ifname: String,
        source: rtnetlink::Error,
    },
    #[error("looking up interface {ifname:?}: {source}")]
    LookupLink { ifname: String, source: nix::Error },
    #[error("listing routes: {0}")]
    ListRoutes(rtnetlink::Error),
    #[error("deleting default route {route}: {source}")]
    DeleteRoute {
        route: String,
        source: rtnetlink::Error,
    },
    #[error("building a default route via {gateway}: {reason}")]
    BuildRoute { gateway: IpAddr, reason: String },
    /// The kernel refused the route because another default route of its family exists.
    #[error(
        "adding default route via {gateway} on {ifname:?}: another default route exists: {existing:?}"
    )]
    OtherDefault {
        ifname: String,
        gateway: IpAddr,
        existing: Vec<String>,
    },
    #[error("adding default route via {gateway} on {ifname:?}: {source}")]
    AddRoute {
        ifname: String,
        gateway: IpAddr,
        source: rtnetlink::Error,
    },
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    fn address_family(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }
}

/// One route of the main table, as much of it as the daemon looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub family: Family,
    /// `None` when the kernel sent no destination attribute (older netlink: a default route).
    pub dst: Option<IpAddr>,
    pub dst_prefix_len: u8,
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
}

impl Route {
    /// A default route: prefix length 0, whether the destination came as nil or as `0.0.0.0`/`::`
    /// (current kernels send the latter; upstream's nil-only check misses them, ref §9.5).
    pub fn is_default(&self) -> bool {
        self.dst_prefix_len == 0
    }

    fn from_message(msg: &RouteMessage, family: Family) -> Self {
        let mut route = Route {
            family,
            dst: None,
            dst_prefix_len: msg.header.destination_prefix_length,
            gateway: None,
            oif: None,
        };
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => route.dst = ip_of(a),
                RouteAttribute::Gateway(a) => route.gateway = ip_of(a),
                RouteAttribute::Oif(i) => route.oif = Some(*i),
                _ => {}
            }
        }
        route
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// What to do to the default routes of one family on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRouteChange {
    pub ifname: String,
    pub family: Family,
    /// `None`: remove every default route of the family on the interface. `Some(gw)`: make the
    /// route via `gw` its only default route of that family.
    pub gateway: Option<IpAddr>,
}

/// Runs `f` with a netlink handle opened inside the namespace at `netns`, on its own thread
/// (the sync API the tests use; async callers go through [`on_own_thread`]).
#[cfg(test)]
fn with_netlink<T, F, Fut>(netns: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, NetnsError>>,
{
    on_scoped_thread(move || in_netns(netns, f))
}

/// Runs `f` on a thread of its own and waits for it (the sync API the tests use).
#[cfg(test)]
fn on_scoped_thread<T: Send>(
    f: impl FnOnce() -> Result<T, NetnsError> + Send,
) -> Result<T, NetnsError> {
    std::thread::scope(|s| s.spawn(f).join().map_err(|_| NetnsError::ThreadPanicked)?)
}

/// Moves the CALLING thread into the namespace at `netns` for good and runs `f` there with a
/// netlink handle: only for a thread that exits afterwards ([`on_own_thread`], `with_netlink`).
fn in_netns<T, F, Fut>(netns: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetnsError>>,
{
    enter(netns)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(NetnsError::Runtime)?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetnsError::Connect)?;
        tokio::spawn(conn);
        f(handle).await
    })
}

/// Moves the CALLING thread into the namespace at `netns` for good (see [`in_netns`]).
fn enter(netns: &Path) -> Result<(), NetnsError> {
    let file = open_netns(netns)?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Setns {
        path: netns.to_owned(),
        source,
    })
}

/// Runs `f` on a new OS thread that exits after it, and awaits its result: async callers start
/// it straight from the worker (a thread start is not blocking work) rather than from a
/// blocking-pool task that would start it and wait, a thread hop and a wake-up more per request.
/// A dropped caller leaves the thread to finish on its own, as a blocking task would.
async fn on_own_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetnsError> + Send + 'static,
) -> Result<T, NetnsError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("multus-netns".into())
        .spawn(move || {
            // The receiver is gone only when the request was dropped: nobody to answer.
            let _ = tx.send(f());
        })
        .map_err(NetnsError::Thread)?;
    rx.await.map_err(|_| NetnsError::ThreadPanicked)?
}

/// Opens the namespace file at `netns` only once it is known to be one: its filesystem is nsfs
/// (a bind-mounted `/var/run/netns/<name>`, or `/proc/<pid>/ns/net` through its magic link),
/// or procfs on kernels before nsfs, as upstream's `ns.GetNS` accepts; checked again on the
/// open descriptor.
fn open_netns(netns: &Path) -> Result<File, NetnsError> {
    use nix::sys::statfs::{NSFS_MAGIC, PROC_SUPER_MAGIC, fstatfs, statfs};
    let open_err = |source: std::io::Error| NetnsError::Open {
        path: netns.to_owned(),
        source,
    };
    let is_ns = |t: nix::sys::statfs::FsType| t == NSFS_MAGIC || t == PROC_SUPER_MAGIC;
    let not_ns = |t: nix::sys::statfs::FsType| NetnsError::NotANetns {
        path: netns.to_owned(),
        fs_type: t.0 as u64,
    };
    let before = statfs(netns).map_err(|e| open_err(e.into()))?;
    if !is_ns(before.filesystem_type()) {
        return Err(not_ns(before.filesystem_type()));
    }
    let file = File::open(netns).map_err(open_err)?;
    let after = fstatfs(&file).map_err(|e| open_err(e.into()))?;
    if !is_ns(after.filesystem_type()) {
        return Err(not_ns(after.filesystem_type()));
    }
    Ok(file)
}

/// The main-table routes of `family` in the namespace at `netns`.
#[cfg(test)]
pub fn routes(netns: &Path, family: Family) -> Result<Vec<Route>, NetnsError> {
    with_netlink(netns, |h| async move {
        let msgs = main_routes(&h, family).await?;
        Ok(msgs
            .iter()
            .map(|m| Route::from_message(m, family))
            .collect())
    })
}

/// Which of `names` already name a link in the namespace at `netns`, each looked up by name as
/// upstream's `validateIfName` does (`netlink.LinkByName`: a link's alternative names count, as
/// the kernel refuses them as a new link's name too).
#[cfg(test)]
pub fn existing_links(netns: &Path, names: &[String]) -> Result<Vec<String>, NetnsError> {
    on_scoped_thread(move || enter(netns).and_then(|()| present_links(names)))
}

/// [`existing_links`] on the calling thread, already in the namespace: one `SIOCGIFINDEX` per
/// name on a socket opened there (`if_nametoindex(3)`), no netlink runtime: the check runs on
/// every ADD, and building a runtime and a netlink connection for it cost more than the lookups.
fn present_links(names: &[String]) -> Result<Vec<String>, NetnsError> {
    let mut present = Vec::new();
    for name in names {
        match nix::net::if_::if_nametoindex(name.as_str()) {
            Ok(_) => present.push(name.clone()),
            Err(nix::Error::ENODEV) => {}
            Err(source) => {
                return Err(NetnsError::LookupLink {
                    ifname: name.clone(),
                    source,
                });
            }
        }
    }
    Ok(present)
}

/// [`existing_links`] for async callers (see [`on_own_thread`]).
pub async fn find_existing_links(
    netns: PathBuf,
    names: Vec<String>,
) -> Result<Vec<String>, NetnsError> {
    on_own_thread(move || enter(&netns).and_then(|()| present_links(&names))).await
}

/// Applies `changes` in order inside the namespace at `netns` (one thread for all of them).
#[cfg(test)]
pub fn set_default_routes(netns: &Path, changes: &[DefaultRouteChange]) -> Result<(), NetnsError> {
    with_netlink(netns, |h| apply_all(h, changes))
}

async fn apply_all(h: Handle, changes: &[DefaultRouteChange]) -> Result<(), NetnsError> {
    for change in changes {
        apply_one(&h, change).await?;
    }
    Ok(())
}

/// [`set_default_routes`] for async callers (see [`on_own_thread`]).
pub async fn apply_default_routes(
    netns: PathBuf,
    changes: Vec<DefaultRouteChange>,
) -> Result<(), NetnsError> {
    on_own_thread(move || in_netns(&netns, |h| async move { apply_all(h, &changes).await })).await
}

async fn apply_one(h: &Handle, change: &DefaultRouteChange) -> Result<(), NetnsError> {
    let index = link_index(h, &change.ifname).await?;
    for msg in main_routes(h, change.family).await? {
        let route = Route::from_message(&msg, change.family);
        let keep = change.gateway.is_some() && route.gateway == change.gateway;
        if route.is_default() && route.oif == Some(index) && !keep {
            delete_route(h, msg, &route, &change.ifname).await?;
        }
    }
    match change.gateway {
        Some(gateway) => add_default(h, &change.ifname, index, gateway).await,
        None => Ok(()),
    }
}

async fn link_index(h: &Handle, ifname: &str) -> Result<u32, NetnsError> {
    let links: Vec<LinkMessage> = h
        .link()
        .get()
        .match_name(ifname)
        .execute()
        .try_collect()
        .await
        .map_err(|source| match errno(&source) {
            Some(nix::libc::ENODEV) => NetnsError::LinkNotFound(ifname.to_owned()),
            _ => NetnsError::GetLink {
                ifname: ifname.to_owned(),
                source,
            },
        })?;
    links
        .first()
        .map(|l| l.header.index)
        .ok_or_else(|| NetnsError::LinkNotFound(ifname.to_owned()))
}

/// Routes of the main table only: the kernel's dump also carries the local table, which is
/// not the pod's routing and must never be touched.
async fn main_routes(h: &Handle, family: Family) -> Result<Vec<RouteMessage>, NetnsError> {
    let mut filter = RouteMessage::default();
    filter.header.address_family = family.address_family();
    let all: Vec<RouteMessage> = h
        .route()
        .get(filter)
        .execute()
        .try_collect()
        .await
        .map_err(NetnsError::ListRoutes)?;
    Ok(all
        .into_iter()
        .filter(|m| table_of(m) == u32::from(RouteHeader::RT_TABLE_MAIN))
        .collect())
}

fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

async fn delete_route(
    h: &Handle,
    msg: RouteMessage,
    route: &Route,
    ifname: &str,
) -> Result<(), NetnsError> {
    match h.route().del(msg).execute().await {
        // Gone in between (e.g. the interface went down): what we wanted anyway.
        Err(e) if errno(&e) == Some(ESRCH) => Ok(()),
        Err(source) => Err(NetnsError::DeleteRoute {
            route: format!("via {:?} on {ifname}", route.gateway),
            source,
        }),
        Ok(()) => {
            tracing::debug!(ifname = %ifname, gateway = ?route.gateway, "default route deleted");
            Ok(())
        }
    }
}

async fn add_default(
    h: &Handle,
    ifname: &str,
    index: u32,
    gateway: IpAddr,
) -> Result<(), NetnsError> {
    let msg = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(Family::of(&gateway).unspecified(), 0)
        .and_then(|b| b.gateway(gateway))
        .map_err(|e| NetnsError::BuildRoute {
            gateway,
            reason: e.to_string(),
        })?
        .output_interface(index)
        .build();
    match h.route().add(msg).execute().await {
        // Upstream ignores every EEXIST, but IPv4 answers it for a default route via ANY gateway
        // on any link (same table, metric): only tolerate it when ours is the one that exists.
        Err(e) if errno(&e) == Some(EEXIST) => ensure_present(h, ifname, index, gateway).await,
        Err(source) => Err(NetnsError::AddRoute {
            ifname: ifname.to_owned(),
            gateway,
            source,
        }),
        Ok(()) => {
            tracing::debug!(ifname = %ifname, gateway = %gateway, "default route added");
            Ok(())
        }
    }
}

async fn ensure_present(
    h: &Handle,
    ifname: &str,
    index: u32,
    gateway: IpAddr,
) -> Result<(), NetnsError> {
    let family = Family::of(&gateway);
    let defaults: Vec<Route> = main_routes(h, family)
        .await?
        .iter()
        .map(|m| Route::from_message(m, family))
        .filter(Route::is_default)
        .collect();
    if defaults
        .iter()
        .any(|r| r.gateway == Some(gateway) && r.oif == Some(index))
    {
        return Ok(());
    }
    Err(NetnsError::OtherDefault {
        ifname: ifname.to_owned(),
        gateway,
        existing: defaults
            .iter()
            .map(|r| format!("{:?} (link {:?})", r.gateway, r.oif))
            .collect(),
    })
}

/// The positive errno of a netlink error answer.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get().abs()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
