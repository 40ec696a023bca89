//! Terminal output: aligned tables and progress that stays quiet when not on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// For list commands: prints `items` as JSON with `--json`, or `empty` (on stderr) when there
/// are none; true when that was all there was to print, false when a table should follow.
pub fn json_or_empty<T: serde::Serialize>(
    json: bool,
    items: &[T],
    empty: &str,
) -> anyhow::Result<bool> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(true);
    }
    if items.is_empty() {
        eprintln!("{empty}");
        return Ok(true);
    }
    Ok(false)
}

/// Prints rows as left-aligned columns separated by two spaces (like `snap list`).
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A progress bar for `total` bytes on stderr, hidden when stderr is not a terminal.
pub fn bytes_bar(total: u64, message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// Room for several bars at once (downloads side by side) on stderr; draws nothing when stderr
/// is not a terminal, also for the bars added to it.
pub fn multi_bars() -> MultiProgress {
    if !std::io::stderr().is_terminal() {
        return MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    }
    MultiProgress::new()
}

/// A size as snap writes it: decimal units, rounded down (`999B`, `12kB`, `3MB`).
pub fn human_size(bytes: u64) -> String {
    let mut n = bytes;
    for unit in ["B", "kB", "MB", "GB", "TB", "PB"] {
        if n < 1000 {
            return format!("{n}{unit}");
        }
        n /= 1000;
    }
    format!("{n}EB")
}

/// A bar on stderr counting a change's tasks (`3/9`), with the task under way as its message;
/// hidden when stderr is not a terminal.
pub fn tasks_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A spinner on stderr for work of unknown length, hidden when stderr is not a terminal.
pub fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(100));
    bar.set_message(message.to_string());
    bar
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_are_in_decimal_units_rounded_down() {
        assert_eq!(super::human_size(0), "0B");
        assert_eq!(super::human_size(999), "999B");
        assert_eq!(super::human_size(1000), "1kB");
        assert_eq!(super::human_size(12_345_678), "12MB");
        assert_eq!(super::human_size(u64::MAX), "18EB");
    }
}
