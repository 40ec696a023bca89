//! `pack-store`: make, run and publish to a packd store.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use store_mock::client::Client;

#[derive(Parser)]
#[command(
    name = "pack-store",
    version,
    about = "A self-hostable store for packd: publish packs, release them to channels, serve devices",
    long_about = "A self-hostable store for packd.\n\n\
        The operator makes a store (init), adds publishers (publisher add) and serves it (serve).\n\
        Publishers register names, upload packs and release them to channels, against a running\n\
        store given by --store (or PACK_STORE_URL) with their token (--token or PACK_STORE_TOKEN).\n\
        Devices trust the store through DIR/root.assert: pack remote add NAME URL --trust root.assert",
    after_help = "Examples:\n  \
        pack-store init /srv/store\n  \
        pack-store publisher add /srv/store acme > acme.token\n  \
        pack-store serve /srv/store --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem\n  \
        export PACK_STORE_URL=https://store.example:8443 PACK_STORE_TOKEN=$(cat acme.token)\n  \
        pack-store register hello\n  \
        pack-store upload hello_1.0_amd64.pack --release latest/stable\n  \
        pack-store status hello"
)]
struct Cli {
    /// The store's URL, for the publishing commands.
    #[arg(long, global = true, env = "PACK_STORE_URL")]
    store: Option<String>,
    /// A publisher token (from pack-store publisher add).
    #[arg(long, global = true, env = "PACK_STORE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new store in DIR: database, blob directory, root and signing keys, root.assert.
    Init {
        dir: PathBuf,
        /// The store's id, written into every assertion it signs.
        #[arg(long, default_value = "pack-store")]
        id: String,
    },
    /// Serve the store in DIR over HTTP (or HTTPS with a certificate).
    Serve {
        dir: PathBuf,
        /// Address to listen on, such as 127.0.0.1:8080 (port 0 picks a free one).
        #[arg(long)]
        listen: String,
        /// PEM certificate chain, for HTTPS.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of the certificate.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Manage the publishers of the store in DIR.
    #[command(subcommand)]
    Publisher(PublisherCommand),
    /// Grant a pack of the store in DIR auto-connection of privileged interfaces (the store
    /// operator's review decision, as snapd's store grants it): its pack-declaration is signed
    /// again with `allow-auto-connection`. No interfaces: the grant is taken away.
    Declare {
        dir: PathBuf,
        name: String,
        /// Interfaces whose plugs connect by themselves at install (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "IFACE,...")]
        allow_auto_connection: Vec<String>,
    },
    /// Manage the store's signing keys (reads the root key).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Register a pack name for your publisher.
    Register { name: String },
    /// Upload a pack file; prints its new revision.
    Upload {
        file: PathBuf,
        /// Release the new revision to these channels (comma-separated).
        #[arg(long, value_delimiter = ',')]
        release: Vec<String>,
        /// Print {"revision": N}.
        #[arg(long)]
        json: bool,
    },
    /// Release a revision to one or more channels.
    Release {
        name: String,
        revision: u32,
        #[arg(required = true)]
        channels: Vec<String>,
        /// Roll it out in waves instead (one channel): devices get it as their wave opens,
        /// and the rollout halts by itself when too many of them fail.
        #[arg(long)]
        progressive: bool,
        /// The waves: SHARE[:SOAK],... ending at 100% [default: 1%,5%,25%,100%, an hour each].
        #[arg(long, requires = "progressive", value_name = "WAVES")]
        waves: Option<String>,
        /// Device ids that are in the first wave whatever their bucket (comma-separated).
        #[arg(
            long,
            requires = "progressive",
            value_delimiter = ',',
            value_name = "ID,..."
        )]
        canary: Vec<String>,
        /// Halt when more than this share of the devices that finished failed [default: 5%].
        #[arg(long, requires = "progressive", value_name = "PCT")]
        halt_at: Option<String>,
        /// ...once at least this many finished [default: 3].
        #[arg(long, requires = "progressive", value_name = "N")]
        halt_min: Option<u64>,
        /// Never halt by itself.
        #[arg(long, requires = "progressive", conflicts_with_all = ["halt_at", "halt_min"])]
        no_halt: bool,
    },
    /// Show a pack's rollouts (per wave: offered, installed, healthy, failed, reverted), or
    /// pause, resume or halt the one under way.
    Rollout {
        name: String,
        /// pause, resume or halt.
        action: Option<String>,
        /// The rollout on this channel, when the pack has them on several [default: the newest].
        #[arg(long, requires = "action")]
        channel: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Close channels: they follow the next more stable risk.
    Close {
        name: String,
        #[arg(required = true)]
        channels: Vec<String>,
    },
    /// Revoke a revision: devices never install it again and move away from it.
    Revoke {
        name: String,
        revision: u32,
        /// Revoke as the store's operator, in the store directory DIR (no token).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Show a pack's channel map and revisions.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PublisherCommand {
    /// Add a publisher; prints its token alone on stdout (kept only as a digest).
    Add { dir: PathBuf, name: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Certify a new signing key and sign with it from now on; prints its id.
    Rotate { dir: PathBuf },
    /// Revoke a signing key; what it signed is signed again with the current key.
    Revoke { dir: PathBuf, key: String },
}

fn client(cli: &Cli) -> anyhow::Result<Client> {
    let url = cli
        .store
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("which store? pass --store URL or set PACK_STORE_URL"))?;
    Client::new(url, cli.token.clone())
}

/// The name in a pack file's metadata.
fn pack_name(file: &std::path::Path) -> anyhow::Result<String> {
    let label = file.display().to_string();
    let inspected = gadget_kernel_base::inspect::inspect(file, &label)
        .with_context(|| format!("{} is not a pack this store would take", file.display()))?;
    Ok(inspected.meta.name)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PACK_STORE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = &mut std::io::stdout();
    match &cli.command {
        Command::Init { dir, id } => {
            let l = store_mock::keys::init(dir, id)?;
            writeln!(
                out,
                "made a store in {}; give devices {}",
                dir.display(),
                l.root_assert().display()
            )?;
        }
        Command::Serve {
            dir,
            listen,
            tls_cert,
            tls_key,
        } => {
            let store = Arc::new(store_mock::ops::Store::open(dir)?);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => {
                    let tls = store_mock::tls::acceptor(cert, key)?;
                    writeln!(out, "serving {} on https://{addr}", dir.display())?;
                    out.flush()?;
                    store_mock::tls::serve(store, listener, tls).await?;
                }
                _ => {
                    writeln!(out, "serving {} on http://{addr}", dir.display())?;
                    out.flush()?;
                    store_mock::server::serve(store, listener).await?;
                }
            }
        }
        Command::Publisher(PublisherCommand::Add { dir, name }) => {
            let store = store_mock::ops::Store::open(dir)?;
            writeln!(out, "{}", store.add_publisher(name)?)?;
        }
        Command::Declare {
            dir,
            name,
            allow_auto_connection,
        } => {
            store_mock::ops::declare(dir, name, allow_auto_connection)?;
            let what = if allow_auto_connection.is_empty() {
                "no interface".to_string()
            } else {
                allow_auto_connection.join(", ")
            };
            writeln!(out, "{name} may auto-connect {what}")?;
        }
        Command::Key(KeyCommand::Rotate { dir }) => {
            writeln!(out, "{}", store_mock::ops::rotate_key(dir)?)?;
        }
        Command::Key(KeyCommand::Revoke { dir, key }) => {
            let n = store_mock::ops::revoke_key(dir, key)?;
            writeln!(
                out,
                "revoked {key}; signed {n} assertions again with the current key"
            )?;
        }
        Command::Register { name } => {
            let v = client(&cli)?.register(name).await?;
            writeln!(
                out,
                "registered {name} (pack-id {})",
                v["pack-id"].as_str().unwrap_or("")
            )?;
        }
        Command::Upload {
            file,
            release,
            json,
        } => {
            let name = pack_name(file)?;
            let v = client(&cli)?.upload(file, &name, release).await?;
            let rev = v["revision"].as_u64().unwrap_or(0);
            if *json {
                writeln!(out, "{}", serde_json::json!({"revision": rev}))?;
            } else {
                writeln!(out, "{rev}")?;
            }
        }
        Command::Release {
            name,
            revision,
            channels,
            progressive: true,
            waves,
            canary,
            halt_at,
            halt_min,
            no_halt,
        } => {
            let [channel] = channels.as_slice() else {
                anyhow::bail!("a progressive release goes to one channel at a time");
            };
            let mut halt = store_mock::rollout::Halt::default();
            if let Some(p) = halt_at {
                halt.ratio = p
                    .strip_suffix('%')
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|v| v / 100.0)
                    .ok_or_else(|| anyhow::anyhow!("--halt-at takes a share such as 5%"))?;
            }
            if let Some(n) = halt_min {
                halt.min_reports = *n;
            }
            let plan = store_mock::rollouts::Progressive {
                waves: waves.clone(),
                canaries: canary.clone(),
                halt: Some(halt),
                no_halt: *no_halt,
            };
            let v = client(&cli)?
                .release_progressive(name, *revision, channel, &plan)
                .await?;
            writeln!(
                out,
                "rolling out {name} revision {revision} to {channel} (rollout {})",
                v["rollout"]
            )?;
        }
        Command::Rollout {
            name,
            action,
            channel,
            json,
        } => {
            if let Some(a) = action {
                let v = client(&cli)?
                    .control_rollout(name, a, channel.as_deref())
                    .await?;
                writeln!(
                    out,
                    "the rollout of {name} is {}",
                    v["state"].as_str().unwrap_or("")
                )?;
            } else {
                let v = client(&cli)?.rollouts(name).await?;
                if *json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                } else {
                    print_rollouts(out, &v)?;
                }
            }
        }
        Command::Release {
            name,
            revision,
            channels,
            ..
        } => {
            client(&cli)?.release(name, *revision, channels).await?;
            writeln!(
                out,
                "released {name} revision {revision} to {}",
                channels.join(", ")
            )?;
        }
        Command::Close { name, channels } => {
            client(&cli)?.close(name, channels).await?;
            writeln!(out, "closed {} of {name}", channels.join(", "))?;
        }
        Command::Revoke {
            name,
            revision,
            dir,
        } => {
            match dir {
                Some(dir) => store_mock::ops::Store::open(dir)?.revoke(None, name, *revision)?,
                None => {
                    client(&cli)?.revoke(name, *revision).await?;
                }
            }
            writeln!(out, "revoked revision {revision} of {name}")?;
        }
        Command::Status { name, json } => {
            let v = client(&cli)?.status(name).await?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                print_status(out, &v)?;
            }
        }
    }
    Ok(())
}

fn print_status(out: &mut impl Write, v: &serde_json::Value) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<28} {:<10} {:<14} Follows",
        "Channel", "Revision", "Version"
    )?;
    for c in v["channels"].as_array().into_iter().flatten() {
        let rev = c["revision"].as_u64().map_or("-".into(), |r| r.to_string());
        let follows = c["follows"]
            .as_str()
            .map_or(String::new(), |f| format!("↑ {f}"));
        writeln!(
            out,
            "{:<28} {:<10} {:<14} {}",
            c["channel"].as_str().unwrap_or(""),
            rev,
            c["version"].as_str().unwrap_or("-"),
            follows
        )?;
    }
    let revs: Vec<String> = v["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let revoked = if r["revoked"].is_null() {
                ""
            } else {
                " (revoked)"
            };
            format!(
                "{} ({}){revoked}",
                r["revision"],
                r["version"].as_str().unwrap_or("")
            )
        })
        .collect();
    writeln!(out, "Revisions: {}", revs.join(", "))?;
    Ok(())
}

/// The table of `pack-store rollout NAME`.
fn print_rollouts(out: &mut impl std::io::Write, v: &serde_json::Value) -> anyhow::Result<()> {
    let Some(list) = v.as_array().filter(|l| !l.is_empty()) else {
        writeln!(out, "no rollouts")?;
        return Ok(());
    };
    for r in list {
        let why = r["why"]
            .as_str()
            .map(|w| format!(": {w}"))
            .unwrap_or_default();
        writeln!(
            out,
            "rollout {} of revision {} to {}: {}{why}",
            r["id"],
            r["revision"],
            r["channel"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or("")
        )?;
        writeln!(
            out,
            "  wave  share  open  offered  installed  healthy  failed  reverted"
        )?;
        for w in r["waves"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  {:<4}  {:>4}%  {:<4}  {:>7}  {:>9}  {:>7}  {:>6}  {:>8}",
                w["wave"],
                w["share"].as_f64().unwrap_or(0.0) * 100.0,
                if w["open"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                },
                w["offered"],
                w["installed"],
                w["healthy"],
                w["failed"],
                w["reverted"]
            )?;
        }
    }
    Ok(())
}
