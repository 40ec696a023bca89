//! A fake `org.freedesktop.NetworkManager` for the `refresh.metered` tests: it owns the name on
//! a private `dbus-daemon` and has the one property packd reads, `Metered` (NetworkManager's
//! NMMetered: 0 unknown, 1 yes, 2 no, 3 guess-yes, 4 guess-no).
//!
//! Usage: `fake-networkmanager BUS-ADDRESS METERED`; prints `ready` once it owns the name.

struct Manager {
    metered: u32,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl Manager {
    #[zbus(property)]
    fn metered(&self) -> u32 {
        self.metered
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(address), Some(metered)) = (args.get(1), args.get(2).and_then(|m| m.parse().ok()))
    else {
        eprintln!("usage: fake-networkmanager BUS-ADDRESS METERED");
        std::process::exit(2);
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let _conn = zbus::connection::Builder::address(address.as_str())
        .serve_at("/org/freedesktop/NetworkManager", Manager { metered })
        .name("org.freedesktop.NetworkManager")
        .build()
        .await
        .expect("connect to the bus and own org.freedesktop.NetworkManager");
    println!("ready");
    term.recv().await;
}
