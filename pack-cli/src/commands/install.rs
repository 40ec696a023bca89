//! `pack install NAME [--channel C] [--remote R]` (from a store, streamed) and
//! `pack install FILE --dangerous` (an upload).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, bail};
use packd_api::types::{PackAction, PackInfo};

use super::change::{change_id, follow};
use super::query::encode;
use super::store_events;
use crate::cli::InstallArgs;
use crate::client::Client;

/// The channel a store install follows when none is given.
const DEFAULT_CHANNEL: &str = "stable";

pub async fn run(client: &Client, args: &InstallArgs) -> anyhow::Result<()> {
    if is_file_target(&args.target, args.target.is_file()) {
        return install_file(client, args).await;
    }
    let Some(name) = args.target.to_str() else {
        bail!(
            "{} is neither a file nor a pack name",
            args.target.display()
        );
    };
    if args.dangerous {
        bail!(
            "--dangerous is for local files, and {name:?} is not one: packs from a store are \
             signed; drop --dangerous, or give the file's path (./{name})"
        );
    }
    install_from_store(client, name, args).await
}

/// TARGET is a package file when it names an existing file, contains a `/` or ends in
/// `.pack`; otherwise a pack name.
fn is_file_target(target: &Path, is_file: bool) -> bool {
    let bytes = target.as_os_str().as_bytes();
    is_file || bytes.contains(&b'/') || bytes.ends_with(b".pack")
}

async fn install_from_store(client: &Client, name: &str, args: &InstallArgs) -> anyhow::Result<()> {
    let action = PackAction {
        action: "install".into(),
        channel: Some(
            args.channel
                .clone()
                .unwrap_or_else(|| DEFAULT_CHANNEL.into()),
        ),
        remote: args.remote.clone(),
        ..Default::default()
    };
    let resp = client
        .post_stream(&format!("/v2/packs/{}", encode(name)), &action)
        .await?;
    let streamed = store_events::read(resp).await;
    for n in &streamed.unchanged {
        eprintln!("{n} is already installed; see 'pack refresh' and 'pack switch'");
    }
    store_events::finish(client, streamed, "installed", args.no_wait).await
}

async fn install_file(client: &Client, args: &InstallArgs) -> anyhow::Result<()> {
    let file = &args.target;
    if args.channel.is_some() || args.remote.is_some() {
        bail!(
            "--channel and --remote are for installs from a store, and {} is a file",
            file.display()
        );
    }
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !args.dangerous {
        bail!(
            "cannot install {file_name:?}: local packages carry no store signature; pass --dangerous to install it anyway"
        );
    }
    let md = std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !md.is_file() {
        bail!("{} is not a file; pass a .pack file", file.display());
    }
    let query = format!("dangerous=true&filename={}", encode(&file_name));
    // Ask first: a refusal (not root, say) must not arrive while the file is being sent.
    client
        .post_json(
            &format!("/v2/packs?{query}&preflight=true"),
            &serde_json::Value::Null,
        )
        .await?;
    let bar = crate::output::bytes_bar(md.len(), &format!("uploading {file_name}"));
    let progress = bar.clone();
    let env = client
        .upload(&format!("/v2/packs?{query}"), file, move |n| {
            progress.inc(n)
        })
        .await;
    bar.finish_and_clear();
    let id = change_id(&env?)?;
    if args.no_wait {
        println!("{id}");
        return Ok(());
    }
    let change = follow(client, &id).await?;
    for name in &change.pack_names {
        let info: PackInfo = client.get(&format!("/v2/packs/{name}")).await?;
        println!(
            "{} {} ({}) installed",
            info.name, info.version, info.revision
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_file_target;
    use std::path::Path;

    #[test]
    fn files_and_names_are_told_apart() {
        let file = |s: &str, exists: bool| is_file_target(Path::new(s), exists);
        assert!(!file("hello", false));
        assert!(!file("hello-world", false));
        assert!(
            file("hello", true),
            "an existing file in the current directory"
        );
        assert!(file("./hello", false));
        assert!(file("dist/hello_1.0_amd64.pack", false));
        assert!(
            file("hello_1.0_amd64.pack", false),
            "missing, but clearly meant a file"
        );
        assert!(!file("hello.tools", false));
    }
}
