//! Sockets and the network.

use crate::Args;
use crate::util::{Outcome, Parts, add_fails, close, en, errno, read_text, ret, show};

fn socket(domain: i32, kind: i32, proto: i32) -> Result<i64, i32> {
    // SAFETY: socket with integer arguments.
    ret(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, proto) } as i64)
}

fn try_socket(parts: &mut Parts, domain: i32, kind: i32, proto: i32, what: &str) {
    let r = socket(domain, kind, proto);
    if let Ok(fd) = r {
        close(fd);
    }
    add_fails(parts, &format!("socket({what})"), r);
}

pub fn packet_socket(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    let all = (libc::ETH_P_ALL as u16).to_be() as i32;
    try_socket(
        &mut parts,
        libc::AF_PACKET,
        libc::SOCK_RAW,
        all,
        "AF_PACKET, SOCK_RAW",
    );
    try_socket(
        &mut parts,
        libc::AF_PACKET,
        libc::SOCK_DGRAM,
        all,
        "AF_PACKET, SOCK_DGRAM",
    );
    parts.outcome()
}

pub fn raw_ip_socket(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    try_socket(
        &mut parts,
        libc::AF_INET,
        libc::SOCK_RAW,
        libc::IPPROTO_RAW,
        "AF_INET, SOCK_RAW, IPPROTO_RAW",
    );
    try_socket(
        &mut parts,
        libc::AF_INET,
        libc::SOCK_RAW,
        libc::IPPROTO_ICMP,
        "AF_INET, SOCK_RAW, IPPROTO_ICMP",
    );
    try_socket(
        &mut parts,
        libc::AF_INET6,
        libc::SOCK_RAW,
        libc::IPPROTO_ICMPV6,
        "AF_INET6, SOCK_RAW, IPPROTO_ICMPV6",
    );
    parts.outcome()
}

pub fn netlink_sockets(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for (proto, name) in [
        (libc::NETLINK_AUDIT, "NETLINK_AUDIT"),
        (libc::NETLINK_KOBJECT_UEVENT, "NETLINK_KOBJECT_UEVENT"),
        (libc::NETLINK_NETFILTER, "NETLINK_NETFILTER"),
        (libc::NETLINK_SOCK_DIAG, "NETLINK_SOCK_DIAG"),
        (libc::NETLINK_GENERIC, "NETLINK_GENERIC"),
        (libc::NETLINK_XFRM, "NETLINK_XFRM"),
    ] {
        try_socket(
            &mut parts,
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            proto,
            &format!("AF_NETLINK, {name}"),
        );
    }
    parts.outcome()
}

fn sockaddr_v4(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A TCP connection to 127.0.0.1:`port` (at most 3 seconds).
fn connect_tcp(port: u16) -> Result<i64, i32> {
    let fd = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let tv = libc::timeval {
        tv_sec: 3,
        tv_usec: 0,
    };
    let addr = sockaddr_v4(port);
    // SAFETY: valid option and address buffers on our own socket.
    let r = unsafe {
        libc::setsockopt(
            fd as i32,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        ret(libc::connect(
            fd as i32,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) as i64)
    };
    close(fd);
    r
}

/// The host's listener on 127.0.0.1: a separate network namespace, and Landlock.
pub fn connect_host_listener(args: &Args) -> Outcome {
    let mut parts = Parts::new();
    if let Some(port) = args.port {
        let r = connect_tcp(port);
        add_fails(
            &mut parts,
            &format!("connect 127.0.0.1:{port} (the host listens)"),
            r,
        );
    }
    parts.outcome()
}

pub fn bind_tcp(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    for (kind, name, port) in [
        (libc::SOCK_STREAM, "TCP", 0u16),
        (libc::SOCK_STREAM, "TCP", 8080),
        (libc::SOCK_DGRAM, "UDP", 0),
    ] {
        let r = match socket(libc::AF_INET, kind, 0) {
            Ok(fd) => {
                let addr = sockaddr_v4(port);
                // SAFETY: a valid address on our own socket.
                let r = ret(unsafe {
                    libc::bind(
                        fd as i32,
                        (&addr as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                } as i64);
                close(fd);
                r
            }
            Err(e) => Err(e),
        };
        add_fails(&mut parts, &format!("bind {name} 127.0.0.1:{port}"), r);
    }
    parts.outcome()
}

pub fn proc_net_dev(_: &Args) -> Outcome {
    let mut parts = Parts::new();
    match read_text("/proc/net/dev") {
        Ok(text) => {
            let names: Vec<String> = text
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .map(|n| n.trim().to_string())
                .collect();
            parts.add(
                names == ["lo"],
                format!("interfaces in /proc/net/dev: {names:?}"),
            );
        }
        Err(e) => parts.add(false, format!("read /proc/net/dev: {}", en(e))),
    }
    parts.outcome()
}

/// Landlock really restricts TCP: connecting where nobody listens is refused with EACCES by
/// Landlock before the network could say ECONNREFUSED.
pub fn landlock_tcp_connect(args: &Args) -> Outcome {
    let mut parts = Parts::new();
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: the documented ABI query (NULL attributes, size 0).
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    parts.note(format!(
        "Landlock ABI {}",
        if abi < 0 {
            en(errno())
        } else {
            abi.to_string()
        }
    ));
    let mut ports = vec![1u16];
    if let Some(p) = args.port {
        ports.push(p);
    }
    for port in ports {
        let r = connect_tcp(port);
        parts.add(
            r == Err(libc::EACCES),
            format!(
                "connect 127.0.0.1:{port}: {}{}",
                show(&r),
                match r {
                    Err(libc::EACCES) => " (Landlock)",
                    Err(libc::ECONNREFUSED) =>
                        " (the network answered: Landlock does not restrict TCP)",
                    _ => "",
                }
            ),
        );
    }
    parts.outcome()
}

fn connect_unix(path: &str) -> Result<i64, i32> {
    let fd = socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)?;
    // SAFETY: zeroed sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        close(fd);
        return Err(libc::ENAMETOOLONG);
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a valid address on our own socket.
    let r = ret(unsafe {
        libc::connect(
            fd as i32,
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    } as i64);
    close(fd);
    r
}

/// packd's API socket (the daemon's host path, and where it would be in a normal root).
pub fn packd_socket(args: &Args) -> Outcome {
    let mut parts = Parts::new();
    if args.sockets.is_empty() {
        parts.add(false, "no --socket was given");
    }
    let mut paths = args.sockets.clone();
    paths.push("/run/packd.socket".into());
    for p in paths {
        let r = connect_unix(&p);
        add_fails(&mut parts, &format!("connect {p}"), r);
    }
    parts.outcome()
}
