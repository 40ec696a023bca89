//! A streamed install or refresh from a store: packd answers `application/x-ndjson`, one
//! [`StoreEvent`] a line, while it downloads and verifies; each verified revision goes to a
//! change of its own. Here: a bar per download, errors as they come, then each change followed
//! to its end and what it installed printed.

use std::collections::HashMap;

use anyhow::bail;
use http_body_util::BodyExt;
use indicatif::{MultiProgress, ProgressBar};
use packd_api::store::StoreEvent;
use packd_api::types::PackInfo;

use super::change::follow;
use super::query::encode;
use crate::client::Client;

/// Splits a byte stream into lines, whatever the chunks it arrives in.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// The lines that `data` completes (without their `\n`); a partial last line is kept for
    /// the next chunk.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            lines.push(line);
        }
        lines
    }

    /// A last line the stream ended without a `\n` after, if any.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then_some(self.pending)
    }
}

/// What a stream said, once it is over.
#[derive(Debug, Default)]
pub struct Streamed {
    /// (pack, change id), in the order they came.
    pub changes: Vec<(String, String)>,
    /// The packs an `error` event was about.
    pub failed: Vec<String>,
    /// The packs already up to date (from `done`).
    pub unchanged: Vec<String>,
    /// Why the stream ended before its `done`, when it did.
    pub cut: Option<String>,
}

impl Streamed {
    /// Nothing was started and nothing went wrong.
    pub fn quiet(&self) -> bool {
        self.changes.is_empty() && self.failed.is_empty() && self.cut.is_none()
    }
}

/// Reads a stream to its end: a bar per download (on stderr), `error: NAME: MESSAGE` on
/// stderr for each error event. A stream cut short is recorded in [`Streamed::cut`], so the
/// changes it did start are still followed.
pub async fn read(resp: hyper::Response<hyper::body::Incoming>) -> Streamed {
    let mut reader = Reader {
        multi: crate::output::multi_bars(),
        bars: HashMap::new(),
        out: Streamed::default(),
        done: false,
    };
    let mut body = resp.into_body();
    let mut lines = Lines::default();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                reader.out.cut = Some(format!("packd's answer broke off: {e}"));
                break;
            }
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for line in lines.push(data) {
            reader.line(&line);
        }
        if reader.done {
            break;
        }
    }
    if !reader.done
        && let Some(last) = lines.finish()
    {
        reader.line(&last);
    }
    reader.end()
}

struct Reader {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    out: Streamed,
    done: bool,
}

impl Reader {
    fn line(&mut self, line: &[u8]) {
        if self.done || line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                self.out.cut = Some(format!(
                    "packd sent a line that is not JSON ({e}): {}",
                    String::from_utf8_lossy(&line[..line.len().min(200)])
                ));
                self.done = true;
                return;
            }
        };
        // An event this pack does not know (from a newer packd) is passed over.
        if let Ok(event) = serde_json::from_value::<StoreEvent>(value) {
            self.event(event);
        }
    }

    fn event(&mut self, event: StoreEvent) {
        match event {
            StoreEvent::Download {
                name,
                revision,
                done,
                total,
            } => {
                let bar = self.bars.entry(name.clone()).or_insert_with(|| {
                    self.multi.add(crate::output::bytes_bar(
                        total,
                        &format!("downloading {name} ({revision})"),
                    ))
                });
                bar.set_length(total);
                bar.set_position(done);
            }
            StoreEvent::Change { name, id } => {
                self.clear(&name);
                self.out.changes.push((name, id));
            }
            StoreEvent::Error {
                name,
                kind: _,
                message,
            } => {
                self.clear(&name);
                self.multi.suspend(|| {
                    if name.is_empty() {
                        eprintln!("error: {message}");
                    } else {
                        eprintln!("error: {name}: {message}");
                    }
                });
                self.out.failed.push(name);
            }
            StoreEvent::Done { unchanged } => {
                self.out.unchanged = unchanged;
                self.done = true;
            }
        }
    }

    fn clear(&mut self, name: &str) {
        if let Some(bar) = self.bars.remove(name) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    fn end(mut self) -> Streamed {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
        if !self.done && self.out.cut.is_none() {
            self.out.cut = Some("packd's answer ended before it said it was done".into());
        }
        self.out
    }
}

/// Follows the changes a stream started (or, with `no_wait`, prints their ids) and prints
/// `NAME VERSION (REV) VERB` for each that succeeded (VERB: installed, refreshed). An error
/// at the end, naming what failed, when anything did.
pub async fn finish(
    client: &Client,
    streamed: Streamed,
    verb: &str,
    no_wait: bool,
) -> anyhow::Result<()> {
    let mut failed = streamed.failed;
    for (name, id) in &streamed.changes {
        if no_wait {
            println!("{id}");
            continue;
        }
        if let Err(e) = follow(client, id).await {
            eprintln!("error: {e:#}");
            failed.push(name.clone());
            continue;
        }
        let info: PackInfo = client.get(&format!("/v2/packs/{}", encode(name))).await?;
        println!("{} {} ({}) {verb}", info.name, info.version, info.revision);
    }
    match summary(&failed, streamed.cut.as_deref(), verb) {
        None => Ok(()),
        Some(what) => bail!("{what}"),
    }
}

/// What went wrong, for the error a streamed install or refresh ends with; `None` when
/// nothing did.
fn summary(failed: &[String], cut: Option<&str>, verb: &str) -> Option<String> {
    let see_changes = "see 'pack changes' for what was started";
    if failed.is_empty() {
        return cut.map(|cut| format!("{cut}; {see_changes}"));
    }
    // An error about no pack in particular counts, but has no name to list.
    let names: Vec<&str> = failed
        .iter()
        .map(String::as_str)
        .filter(|n| !n.is_empty())
        .collect();
    let what = if names.is_empty() {
        format!("cannot {}; see the errors above", verb_noun(verb))
    } else {
        format!("cannot {} {}", verb_noun(verb), names.join(", "))
    };
    Some(match cut {
        None => what,
        Some(cut) => format!("{what}; and {cut}; {see_changes}"),
    })
}

/// `installed` → `install`, for "cannot install …".
fn verb_noun(verb: &str) -> &str {
    verb.strip_suffix("ed").unwrap_or(verb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut lines = Lines::default();
        assert!(lines.push(b"{\"done\":").is_empty());
        assert_eq!(
            lines.push(b"{}}\n{\"a\"\n\n{\"b\""),
            vec![b"{\"done\":{}}".to_vec(), b"{\"a\"".to_vec(), Vec::new()]
        );
        assert_eq!(lines.push(b":1}\n"), vec![b"{\"b\":1}".to_vec()]);
        assert_eq!(lines.finish(), None);
        let mut lines = Lines::default();
        assert!(lines.push(b"{\"x\":1}").is_empty());
        assert_eq!(lines.finish(), Some(b"{\"x\":1}".to_vec()));
    }

    fn read_lines(chunks: &[&str]) -> Streamed {
        let mut reader = Reader {
            multi: MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden()),
            bars: HashMap::new(),
            out: Streamed::default(),
            done: false,
        };
        let mut lines = Lines::default();
        for chunk in chunks {
            for line in lines.push(chunk.as_bytes()) {
                reader.line(&line);
            }
        }
        reader.end()
    }

    #[test]
    fn events_collect_changes_errors_and_the_unchanged() {
        let out = read_lines(&[
            r#"{"download":{"name":"hello","revision":3,"done":10,"total":"#,
            "100}}\n",
            r#"{"change":{"name":"hello","id":"7"}}"#,
            "\n",
            r#"{"error":{"name":"tools","kind":"not-trusted","message":"bad digest"}}"#,
            "\n{\"some-new-event\":{}}\n",
            r#"{"done":{"unchanged":["base"]}}"#,
            "\n",
        ]);
        assert_eq!(out.changes, vec![("hello".to_string(), "7".to_string())]);
        assert_eq!(out.failed, vec!["tools".to_string()]);
        assert_eq!(out.unchanged, vec!["base".to_string()]);
        assert_eq!(out.cut, None);
        assert!(!out.quiet());
    }

    #[test]
    fn a_stream_without_done_is_cut() {
        let out = read_lines(&["{\"change\":{\"name\":\"a\",\"id\":\"1\"}}\n"]);
        assert_eq!(out.changes.len(), 1);
        assert!(out.cut.is_some());
        let out = read_lines(&["not json\n"]);
        assert!(out.cut.unwrap().contains("not JSON"));
    }

    #[test]
    fn failures_are_summed_up() {
        assert_eq!(summary(&[], None, "refreshed"), None);
        assert_eq!(
            summary(&["a".into(), "b".into()], None, "refreshed").as_deref(),
            Some("cannot refresh a, b")
        );
        assert_eq!(
            summary(&[String::new()], None, "installed").as_deref(),
            Some("cannot install; see the errors above")
        );
        assert!(
            summary(&[], Some("cut"), "installed")
                .unwrap()
                .starts_with("cut; see")
        );
    }

    #[test]
    fn the_wire_format_is_externally_tagged_kebab_case() {
        let line = serde_json::to_string(&StoreEvent::Done { unchanged: vec![] }).unwrap();
        assert_eq!(line, r#"{"done":{"unchanged":[]}}"#);
    }
}
