//! `packd`: the package daemon. Runs in the foreground; logs to stderr.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use packd::daemon::{Config, Daemon, SupervisorChoice};
use tracing_subscriber::EnvFilter;

/// The packd daemon: installs, mounts and runs confined packages, and serves the API that the
/// `pack` command talks to.
#[derive(Debug, Parser)]
#[command(name = "packd", version, about, long_about = None)]
struct Args {
    /// Root directory every path hangs off (state, mounts, data, socket).
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// The API socket [default: ROOT/run/packd.socket].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The `pack` binary that launchers in ROOT/pack/bin point to [default: next to packd].
    #[arg(long, value_name = "PATH")]
    pack_binary: Option<PathBuf>,
    /// The `pack-confine` sandbox helper [default: next to packd].
    #[arg(long, value_name = "PATH")]
    confine_helper: Option<PathBuf>,
    /// What carries out a reboot or power-off asked for through the API (the shutdown
    /// interface, or root): run as `COMMAND reboot` or `COMMAND power-off`
    /// [default: `reboot` or `poweroff` from PATH].
    #[arg(long, value_name = "COMMAND", env = "PACKD_SYSTEM_COMMAND")]
    system_command: Option<PathBuf>,
    /// Who supervises services: packd's own monitors, or systemd (each service's monitor a
    /// transient unit, through org.freedesktop.systemd1 on D-Bus). Services outlive packd
    /// either way.
    #[arg(long, value_enum, default_value = "packd", env = "PACKD_SUPERVISOR")]
    supervisor: SupervisorArg,
    /// The D-Bus address systemd answers on, for `--supervisor systemd` [default: the system
    /// bus].
    #[arg(long, value_name = "ADDRESS", env = "PACKD_SYSTEMD_BUS")]
    systemd_bus: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SupervisorArg {
    Packd,
    Systemd,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find packd's own path")?;
    Ok(exe.parent().unwrap_or(Path::new("/")).join(name))
}

fn main() -> anyhow::Result<()> {
    // Descriptors packd inherited must not reach the sandbox helper (or any sandbox).
    // SAFETY: close_range with constant arguments, before anything else opens a descriptor.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let args = Args::parse();
    let filter = EnvFilter::try_from_env("PACKD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Standard error may fail (a full disk, a dead reader): lines are then counted and
    // dropped, never a panic (packd::logging).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(packd::logging::Stderr::new());
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("packd must run as root: it mounts packages and builds sandboxes");
    }
    let root = std::path::absolute(&args.root).context("cannot resolve --root")?;
    let socket = match args.socket {
        Some(s) => std::path::absolute(s).context("cannot resolve --socket")?,
        None => root.join("run/packd.socket"),
    };
    let config = Config {
        root,
        socket,
        pack_binary: match args.pack_binary {
            Some(p) => p,
            None => sibling("pack")?,
        },
        confine_helper: match args.confine_helper {
            Some(p) => p,
            None => sibling("pack-confine")?,
        },
        system_command: args.system_command,
        supervisor: match args.supervisor {
            SupervisorArg::Packd => SupervisorChoice::Native,
            SupervisorArg::Systemd => SupervisorChoice::Systemd {
                bus: args.systemd_bus,
            },
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let daemon = Daemon::start(config).await?;
        daemon.serve().await
    })
}
