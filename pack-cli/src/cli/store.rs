//! The store commands' arguments: remote, find, switch, refresh, known, ack.

use std::path::PathBuf;

use clap::Subcommand;

use super::JsonArgs;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("view").args(["list", "time"])))]
pub struct RefreshArgs {
    /// The packs [default: every pack installed from a store]. With --hold and --unhold, the
    /// packs whose auto-refresh to hold [default: all of them].
    pub names: Vec<String>,
    /// Switch the named packs to this channel (e.g. beta) and refresh them to what it offers.
    #[arg(
        long,
        value_name = "CHANNEL",
        requires = "names",
        conflicts_with_all = ["list", "time", "hold", "unhold"]
    )]
    pub channel: Option<String>,
    /// Show what a refresh would bring, without refreshing (no root needed).
    #[arg(long, conflicts_with_all = ["time", "hold", "unhold", "no_wait"])]
    pub list: bool,
    /// Show when packd refreshes on its own: the timer, the last and next refresh, the holds
    /// (no root needed).
    #[arg(long, conflicts_with_all = ["names", "hold", "unhold", "no_wait"])]
    pub time: bool,
    /// Hold auto-refresh of NAME (or of every pack) for DURATION (e.g. 24h, 3days), or
    /// forever when DURATION is not given (root). Spell it --hold=DURATION: a word after a
    /// bare --hold is a NAME.
    #[arg(
        long,
        value_name = "DURATION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "forever",
        conflicts_with_all = ["unhold", "no_wait"]
    )]
    pub hold: Option<String>,
    /// Lift the holds on NAME's auto-refresh (without NAME: every hold, the one on all packs
    /// and each pack's) (root).
    #[arg(long, conflicts_with = "no_wait")]
    pub unhold: bool,
    /// Print JSON (with --list or --time).
    #[arg(long, requires = "view")]
    pub json: bool,
    /// Print the change ids and return without waiting (after the downloads).
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct SwitchArgs {
    /// The pack, installed from a store.
    pub name: String,
    /// The channel to follow from now on: [TRACK/]RISK[/BRANCH], e.g. beta.
    #[arg(long, value_name = "CHANNEL", required = true)]
    pub channel: String,
}

#[derive(Debug, clap::Args)]
pub struct FindArgs {
    /// Words to look for in pack names and summaries [default: everything].
    pub query: Option<String>,
    /// Search only this remote [default: all of them].
    #[arg(long, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Print JSON: an array of {"name", "remote", "publisher", "summary", "version"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Trust a store and install from it (root).
    ///
    /// ROOT.assert is the store's root-key assertion (pack-store writes it as root.assert),
    /// got from its operator by a channel you trust: everything installed from the remote is
    /// checked against it. URL is where the store serves its API, e.g. http://host:8080.
    Add(RemoteAddArgs),
    /// Stop trusting a store (root).
    Remove(RemoteRemoveArgs),
    /// List the remotes: their URL, the store they are (its authority) and the installed
    /// packs that come from them.
    List(JsonArgs),
}

#[derive(Debug, clap::Args)]
pub struct RemoteAddArgs {
    /// A name for the remote, used by --remote elsewhere.
    pub name: String,
    /// The store's URL.
    pub url: String,
    /// The store's root-key assertion.
    #[arg(long, value_name = "ROOT.assert", required = true)]
    pub trust: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RemoteRemoveArgs {
    /// The remote.
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct KnownArgs {
    /// The assertion type: root-key, account-key, pack-declaration, pack-revision or refresh.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Only the assertions whose header HEADER is VALUE (all of them must match), e.g.
    /// pack-id=... or public-key-id=....
    #[arg(value_name = "HEADER=VALUE", value_parser = parse_header_filter)]
    pub filters: Vec<(String, String)>,
    /// Only the assertions of this remote [default: all of them].
    #[arg(long, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Print JSON: an array of {"remote", "kind", "headers", "text"}.
    #[arg(long)]
    pub json: bool,
}

/// `HEADER=VALUE` as a pair; a usage error otherwise.
pub fn parse_header_filter(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((h, v)) if !h.is_empty() => Ok((h.to_string(), v.to_string())),
        _ => Err(format!(
            "{s:?} is not HEADER=VALUE; for example pack-id=abc123"
        )),
    }
}

#[derive(Debug, clap::Args)]
pub struct AckArgs {
    /// A file of one or more assertions (as 'pack known' prints them).
    pub file: PathBuf,
}
