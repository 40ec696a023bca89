//! The command line, as data (clap derive). The logic lives in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

mod store;
pub use store::*;

pub const DEFAULT_SOCKET: &str = "/run/packd.socket";

/// pack: install, run and build confined application packages.
///
/// pack talks to the packd daemon over its API socket to install, list, inspect, run and
/// remove packages, and builds packages and base root filesystems on its own.
#[derive(Debug, Parser)]
#[command(
    name = "pack",
    version,
    propagate_version = true,
    after_long_help = "\
Examples:
  pack pack ./hello                      build hello_1.0_amd64.pack from a directory
  sudo pack install hello_1.0_amd64.pack --dangerous
  sudo pack remote add mystore http://store.example:8080 --trust root.assert
  pack find hello
  sudo pack install hello                install hello from a store (latest/stable)
  pack refresh --list                    what a refresh would bring
  pack list
  pack run hello -- --greeting hi
  pack connections hello
  sudo pack connect hello:network
  sudo pack remove hello

Environment:
  PACKD_SOCKET   the daemon's socket when --socket is not given

Exit status:
  0 on success, 1 when the daemon refuses or a change fails, 2 on a usage error.
  'pack run' exits with the app's status; 125 when the app could not be started,
  126 when its command cannot be executed, 127 when it does not exist."
)]
pub struct Cli {
    /// The daemon's API socket.
    #[arg(
        long,
        global = true,
        env = "PACKD_SOCKET",
        default_value = DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    pub socket: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a package from a directory (no daemon needed).
    ///
    /// Validates DIR/meta/pack.yaml (or meta/snap.yaml) and writes a squashfs image named
    /// NAME_VERSION_ARCH.pack in the current directory, or FILE. The image is reproducible: the
    /// same tree gives a byte-identical file (timestamps are fixed to $SOURCE_DATE_EPOCH, or 0;
    /// owners to root). Extended attributes are not stored.
    Pack(PackArgs),
    /// Build base root filesystems.
    Base {
        #[command(subcommand)]
        command: BaseCommand,
    },
    /// Install a pack from a store, or a package file (root).
    ///
    /// NAME|FILE is a file when it names an existing file, contains a '/' or ends in '.pack';
    /// otherwise it is a pack name, installed from a store (see 'pack remote'): the revision
    /// that --channel offers is downloaded, its signature and digest verified against the
    /// store's assertions, and installed. With several remotes, --remote says which one.
    ///
    /// Local files carry no store signature, so they need --dangerous. Installing a file of a
    /// pack that is already installed is a refresh to a new local revision (x1, x2, ...): its
    /// services stop, its data is copied to the new revision, the new services must stay up
    /// through the health window (pack get system refresh.health-window), and any failure
    /// puts the previous revision back, with its data as it was.
    Install(InstallArgs),
    /// Refresh packs installed from a store to what their channel offers (root), or show and
    /// manage refreshes.
    ///
    /// Without NAME, every pack installed from a store. Each refresh is a change of its own: a
    /// pack that fails is put back as it was and the others go on. packd also refreshes on its
    /// own, on a timer (--time); --hold postpones that.
    Refresh(RefreshArgs),
    /// Make an installed pack follow another channel (root). Nothing is downloaded: the next
    /// refresh brings what that channel offers.
    Switch(SwitchArgs),
    /// Search the stores for packs (no root needed).
    ///
    /// Asks every remote (or only --remote) for the packs whose name or summary contains
    /// QUERY; without QUERY, for all of them.
    Find(FindArgs),
    /// Manage the stores packs are installed from (add and remove need root).
    Remote {
        #[command(subcommand)]
        command: RemoteCommand,
    },
    /// Show the assertions of TYPE the device keeps, optionally only those whose headers match.
    ///
    /// Types: root-key, account-key, pack-declaration, pack-revision, refresh. The output is
    /// each assertion's full text (signature included), separated by blank lines, ready for
    /// 'pack ack' on another device.
    Known(KnownArgs),
    /// Add assertions from a file to the device's database (root).
    ///
    /// Each assertion must verify against the keys the device trusts (the roots of its
    /// remotes, see 'pack remote add'). An assertion older than the revision the device keeps
    /// changes nothing.
    Ack(AckArgs),
    /// Remove a pack: its services stopped, its remove hook run, its connections undone, its
    /// apps, every revision and all of its data removed (with --purge, its logs too).
    Remove(RemoveArgs),
    /// List installed packs.
    List(ListArgs),
    /// Show details of a pack: as installed, and as its store offers it.
    ///
    /// For a pack installed from a store, and for a pack that is not installed, packd asks the
    /// store for its channels (a pack installed from a local file has none). When the store
    /// cannot be reached, an installed pack's details are still shown.
    Info(InfoArgs),
    /// Show how an app is confined (for debugging).
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
    /// List connections: every connected plug, or with NAME all of that pack's plugs and
    /// slots (connected or not), or with --all every plug of every pack.
    Connections(ConnectionsArgs),
    /// Connect a plug to a slot (root).
    ///
    /// Without a slot, the only slot that fits: the system's for system interfaces, else the
    /// only one offered. The connection persists across restarts; apps started afterwards get
    /// what it grants.
    Connect(ConnectArgs),
    /// Disconnect a plug (root). An auto-connected plug disconnected by hand stays
    /// disconnected, also across refreshes.
    Disconnect(ConnectArgs),
    /// List the interfaces packd knows.
    Interfaces(JsonArgs),
    /// Show what an interface grants, who provides it, its attributes and who uses it.
    Interface(InterfaceArgs),
    /// Run an app of an installed pack, confined.
    ///
    /// NAME runs the app named like the pack; NAME.APP another one. Standard input, output
    /// and error pass through, signals sent to pack run reach the app, and pack run exits
    /// with the app's exit status.
    Run(RunArgs),
    /// List services: their startup (enabled or disabled) and current state.
    ///
    /// Services are apps with `daemon:` in pack.yaml. packd starts the enabled ones at install
    /// and at boot, restarts them as their `restart-condition` says, and restarts those a
    /// connection change affects.
    Services(ServicesArgs),
    /// Start services (root): PACK for all of its services, or PACK.APP.
    Start(ServiceArgs),
    /// Stop services (root): stop-command, then SIGTERM, then after stop-timeout SIGKILL to
    /// everything left in the service's cgroup.
    Stop(ServiceArgs),
    /// Restart services (root).
    Restart(ServiceArgs),
    /// Show the output of services and hooks (root): the last lines, or with -f new lines as
    /// they come.
    Logs(LogsArgs),
    /// List changes: what packd did and is doing (install, remove, connect, start, ...).
    Changes(JsonArgs),
    /// Show the tasks of a change, with their status and log.
    Tasks(ChangeArgs),
    /// Follow a change until it is done (exits non-zero when it failed).
    Watch(ChangeIdArg),
    /// Abort a change that is still running (root): what it did is undone.
    Abort(ChangeIdArg),
    /// Make an earlier revision current again (root), with its own data as it was when it was
    /// left (the newer revision's changes are not carried back, as in snapd).
    Revert(RevertArgs),
    /// Change system settings (root): pack set system KEY=VALUE...
    ///
    /// refresh.health-window (default 10s): how long a refreshed pack's services must stay up
    /// before the refresh counts as good. refresh.retain (default 2): revisions kept per pack.
    Set(SetArgs),
    /// Show system settings: pack get system [KEY]
    Get(GetArgs),
}

#[derive(Debug, clap::Args)]
pub struct RevertArgs {
    /// The pack.
    pub name: String,
    /// The revision to go back to [default: the one installed before the current].
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Print the change id and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// Whose settings: system.
    pub name: String,
    /// KEY=VALUE pairs.
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub values: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Whose settings: system.
    pub name: String,
    /// One setting; all of them when absent.
    pub key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// The change id (see 'pack changes').
    pub id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ChangeIdArg {
    /// The change id (see 'pack changes').
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct ServicesArgs {
    /// Only these packs (PACK) or services (PACK.APP).
    pub names: Vec<String>,
    /// Print JSON: an array of {"pack", "name", "daemon", "enabled", "active"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// PACK (all of its services) or PACK.APP; services of one pack.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Also start them at boot from now on (start, restart).
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// No longer start them at boot (stop).
    #[arg(long)]
    pub disable: bool,
    /// Print the change id and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// PACK (all of its services) or PACK.APP.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// How many lines to show from the end, or "all".
    #[arg(short = 'n', default_value = "10", value_name = "N")]
    pub lines: String,
    /// Keep printing new lines as they come (until interrupted).
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Debug, clap::Args)]
pub struct PackArgs {
    /// The directory to pack; it must contain meta/pack.yaml or meta/snap.yaml.
    pub dir: PathBuf,
    /// Where to write the package [default: ./NAME_VERSION_ARCH.pack].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Compression: zstd decompresses fastest (app start-up), xz packs smallest.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: CompressionArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Zstd,
    Xz,
    Lzo,
}

#[derive(Debug, Subcommand)]
pub enum BaseCommand {
    /// Build a base package: busybox (from Debian's busybox-static) or debian (debootstrap).
    Build(BaseBuildArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BaseKindArg {
    /// A static busybox with its applets, named "busybox".
    Busybox,
    /// A Debian minbase root filesystem, named "debianNN" (debian12 for bookworm).
    Debian,
}

#[derive(Debug, clap::Args)]
pub struct BaseBuildArgs {
    /// Which base to build.
    #[arg(value_enum)]
    pub kind: BaseKindArg,
    /// The package file to write.
    pub output: PathBuf,
    /// Debian suite for the debian base.
    #[arg(long, default_value = "bookworm")]
    pub suite: String,
    /// Debian mirror for the debian base.
    #[arg(long, default_value = "http://deb.debian.org/debian")]
    pub mirror: String,
    /// A local busybox-static .deb for the busybox base (otherwise fetched with apt).
    #[arg(long, value_name = "FILE")]
    pub deb: Option<PathBuf>,
    /// Compression of the package.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: CompressionArg,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// A pack name (from a store), or a package file (a path, or a name ending in .pack).
    #[arg(value_name = "NAME|FILE")]
    pub target: PathBuf,
    /// Install a package file that carries no store signature (files only).
    #[arg(long)]
    pub dangerous: bool,
    /// The channel to install from and follow afterwards: [TRACK/]RISK[/BRANCH], e.g.
    /// stable, beta, 2.x/edge [default: stable] (store installs only).
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// The remote to install from [default: the only one, or the one that has the pack]
    /// (store installs only).
    #[arg(long, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Print the change id(s) and return without waiting (a store install still waits for
    /// its download).
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The packs to remove.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Also remove their service and hook logs (kept otherwise, to read after the removal).
    #[arg(long)]
    pub purge: bool,
    /// Print the change ids and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON (an array of objects with name, version, revision, type, ...).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ConnectionsArgs {
    /// Only this pack's plugs and slots, connected or not.
    pub name: Option<String>,
    /// Also list unconnected plugs of every pack.
    #[arg(long)]
    pub all: bool,
    /// Print JSON: an array of {"interface", "plug", "slot" (null when unconnected), "manual"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The plug, PACK:PLUG.
    pub plug: String,
    /// The slot, PACK:SLOT (system:INTERFACE for the system's).
    pub slot: Option<String>,
    /// Print the change id and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct JsonArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InterfaceArgs {
    /// The interface, e.g. network.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The pack.
    pub name: String,
    /// Print JSON: the installed pack (name, version, revision, apps, revisions, ...; only
    /// "name" when it is not installed), with "store" (publisher, channels, ...) when a
    /// store answered.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// NAME or NAME.APP.
    pub target: String,
    /// Arguments for the app (put them after -- when they start with a dash).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print, as JSON, the sandbox an app would get when you run it and which layers (namespaces,
    /// cgroups, capabilities, Landlock, seccomp, AppArmor) are active on this kernel.
    Sandbox {
        /// NAME or NAME.APP.
        app: String,
    },
    /// Print the AppArmor profile generated for an app (and whether the kernel enforces it).
    Apparmor {
        /// NAME or NAME.APP.
        app: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn header_filters_need_an_equals_sign() {
        assert_eq!(
            parse_header_filter("pack-id=a=b"),
            Ok(("pack-id".into(), "a=b".into()))
        );
        assert!(
            parse_header_filter("pack-id")
                .unwrap_err()
                .contains("\"pack-id\"")
        );
        assert!(parse_header_filter("=x").is_err());
    }

    #[test]
    fn hold_takes_its_duration_only_after_an_equals_sign() {
        let refresh = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Refresh(r),
                ..
            }) => r,
            other => panic!("{other:?}"),
        };
        let r = refresh(&["pack", "refresh", "--hold", "hello"]);
        assert_eq!(r.hold.as_deref(), Some("forever"));
        assert_eq!(r.names, ["hello"]);
        let r = refresh(&["pack", "refresh", "--hold=24h"]);
        assert_eq!(r.hold.as_deref(), Some("24h"));
        assert!(r.names.is_empty());
        assert!(Cli::try_parse_from(["pack", "refresh", "--list", "--hold"]).is_err());
        assert!(Cli::try_parse_from(["pack", "refresh", "--channel", "beta", "--list"]).is_err());
        assert!(Cli::try_parse_from(["pack", "refresh", "--json"]).is_err());
        assert!(Cli::try_parse_from(["pack", "refresh", "--channel", "beta"]).is_err());
        assert_eq!(
            refresh(&["pack", "refresh", "hello", "--channel", "beta"])
                .channel
                .as_deref(),
            Some("beta")
        );
        assert!(refresh(&["pack", "refresh", "--time", "--json"]).json);
    }
}
