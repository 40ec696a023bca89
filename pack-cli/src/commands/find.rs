//! `pack find [QUERY] [--remote R] [--json]`: search the stores.

use packd_api::store::FoundInfo;

use super::query::with_query;
use crate::cli::FindArgs;
use crate::client::Client;

pub async fn run(client: &Client, args: &FindArgs) -> anyhow::Result<()> {
    let found: Vec<FoundInfo> = client.get(&find_path(args)).await?;
    if crate::output::json_or_empty(args.json, &found, "No matching packs.")? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.version.clone().unwrap_or_else(|| "-".into()),
                f.publisher.clone(),
                f.remote.clone(),
                f.summary.clone(),
            ]
        })
        .collect();
    crate::output::table(
        &["Name", "Version", "Publisher", "Remote", "Summary"],
        &rows,
    );
    Ok(())
}

/// `/v2/find?q=QUERY[&remote=R]`; `q` is always there, empty for everything.
fn find_path(args: &FindArgs) -> String {
    let mut pairs = vec![("q", args.query.as_deref().unwrap_or(""))];
    if let Some(r) = &args.remote {
        pairs.push(("remote", r));
    }
    with_query("/v2/find", &pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_encoded_and_always_present() {
        let args = |q: Option<&str>, r: Option<&str>| FindArgs {
            query: q.map(String::from),
            remote: r.map(String::from),
            json: false,
        };
        assert_eq!(find_path(&args(None, None)), "/v2/find?q=");
        assert_eq!(
            find_path(&args(Some("text editor"), Some("my store"))),
            "/v2/find?q=text%20editor&remote=my%20store"
        );
    }
}
