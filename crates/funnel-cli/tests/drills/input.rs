//! The file source's input rotated, truncated, replaced or deleted under a running
//! pipeline (or while Funnel is down). Lines written before the change and every line of
//! the new file reach the output; a deleted input is reported with what to do.
//! docs/connectors.md has the rule the source follows.

use std::path::Path;
use std::time::Duration;

use crate::harness::{Drill, after_text, append_lines, assert_nothing_lost, assert_says};
use crate::pipelines::{file_destination, file_source, pipeline};

/// `count` distinct lines tagged `tag`.
fn lines(tag: &str, count: u64) -> Vec<String> {
    (1..=count).map(|i| format!("{tag}-{i:06}")).collect()
}

fn file_drill() -> Drill {
    Drill::new(&pipeline(
        &file_source("./in.txt"),
        &file_destination("./out.jsonl"),
    ))
}

fn written(drill: &Drill) -> Vec<String> {
    drill.records("out.jsonl").iter().map(after_text).collect()
}

/// Waits until every one of `expected` is in the output.
fn wait_written(drill: &Drill, what: &str, expected: &[String]) {
    drill.wait_for(what, Duration::from_secs(60), || {
        let got: std::collections::BTreeSet<String> = written(drill).into_iter().collect();
        expected.iter().all(|l| got.contains(l))
    });
}

/// Writes `lines` to a new file `path` (no file there before).
fn create(path: &Path, lines: &[String]) {
    assert!(!path.exists(), "{} exists", path.display());
    append_lines(path, lines.iter().cloned());
}

/// Rotates `input` away as log rotators do: `in.txt.1` becomes `in.txt.2`, `in.txt`
/// becomes `in.txt.1`.
fn rotate_away(input: &Path) {
    let first = input.with_extension("txt.1");
    if first.exists() {
        std::fs::rename(&first, input.with_extension("txt.2")).unwrap();
    }
    std::fs::rename(input, first).unwrap();
}

/// Creates a new `input` holding `count` lines tagged `tag`; the new lines.
fn create_new(input: &Path, tag: &str, count: u64) -> Vec<String> {
    let new = lines(tag, count);
    create(input, &new);
    new
}

/// Rewrites `input` in place (same inode) with `count` new lines tagged `tag`; with
/// `truncate_first`, empties it and then appends them, as `copytruncate` and a logger
/// going on would. The new lines.
fn rewrite(input: &Path, tag: &str, count: u64, truncate_first: bool) -> Vec<String> {
    let new = lines(tag, count);
    if truncate_first {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(input)
            .unwrap();
        append_lines(input, new.clone());
    } else {
        std::fs::write(input, new.join("\n") + "\n").unwrap();
    }
    new
}

/// Runs the drill: 1000 lines in the input, read; then `change` (which returns the lines
/// it expects to be read after it), made while Funnel runs or, for a `name` ending in
/// `_while_down`, while it is killed; at the end every line is in the output.
fn drill_input_change(name: &str, change: impl FnOnce(&Drill, &Path) -> Vec<String>) {
    let drill = file_drill();
    let input = drill.path("in.txt");
    let first = lines("a", 1000);
    create(&input, &first);
    let mut funnel = drill.start(&[]);
    wait_written(&drill, "the first file is read", &first);
    // A change made while Funnel is down (killed, then started again after it).
    let down = name.ends_with("_while_down");
    if down {
        funnel.signal("KILL", &drill);
    }
    drill.mark(name);
    let after = change(&drill, &input);
    if down {
        funnel = drill.start(&[]);
    }
    wait_written(&drill, "every line after the change is read", &after);
    funnel.signal("TERM", &drill);
    let got = written(&drill);
    assert_nothing_lost(name, first.iter().chain(&after).cloned(), &got, &drill);
}

#[test]
fn a_file_rotated_by_renaming_loses_no_line_of_the_old_nor_the_new_file() {
    drill_input_change("rotated_by_rename", |_, input| {
        let tail = lines("b", 300);
        append_lines(input, tail.clone());
        rotate_away(input);
        [tail, create_new(input, "c", 700)].concat()
    });
}

#[test]
fn a_file_rotated_whose_new_file_appears_later_loses_no_line() {
    drill_input_change("rotated_then_created_later", |drill, input| {
        rotate_away(input);
        // Longer than the source waits before it calls the input deleted.
        std::thread::sleep(Duration::from_millis(1500));
        drill.mark("the new file is created");
        create_new(input, "k", 600)
    });
}

#[test]
fn a_file_rotated_twice_loses_no_line_of_any_of_the_three_files() {
    drill_input_change("rotated_twice", |drill, input| {
        rotate_away(input);
        let second = create_new(input, "l", 800);
        wait_written(drill, "the second file is read", &second);
        rotate_away(input);
        [second, create_new(input, "m", 800)].concat()
    });
}

#[test]
fn a_file_truncated_then_written_past_its_old_length_is_read_from_its_start() {
    drill_input_change("truncated_then_longer", |_, input| {
        rewrite(input, "n", 2500, true)
    });
}

#[test]
fn a_file_truncated_in_place_is_read_again_from_its_start() {
    drill_input_change("copytruncate", |_, input| {
        std::fs::copy(input, input.with_extension("txt.1")).unwrap();
        rewrite(input, "d", 50, true)
    });
}

#[test]
fn a_file_rewritten_shorter_in_place_is_read_from_its_start() {
    drill_input_change("rewritten_shorter", |_, input| {
        rewrite(input, "e", 10, false)
    });
}

#[test]
fn a_file_rewritten_longer_in_place_is_read_from_its_start() {
    drill_input_change("rewritten_longer", |_, input| {
        rewrite(input, "f", 3000, false)
    });
}

#[test]
fn a_file_replaced_by_renaming_another_over_it_is_read_from_its_start() {
    drill_input_change("replaced_by_rename", |drill, input| {
        let new = lines("g", 400);
        let staged = drill.path("in.txt.new");
        create(&staged, &new);
        std::fs::rename(&staged, input).unwrap();
        new
    });
}

#[test]
fn a_file_rotated_while_funnel_is_down_loses_no_line() {
    drill_input_change("rotated_while_down", |drill, input| {
        let tail = lines("h", 200);
        append_lines(input, tail.clone());
        rotate_away(input);
        let new = create_new(input, "i", 500);
        drill.mark("starting funnel again");
        [tail, new].concat()
    });
}

#[test]
fn a_deleted_input_is_reported_with_what_to_do_and_a_new_file_is_read() {
    drill_input_change("deleted", |drill, input| {
        std::fs::remove_file(input).unwrap();
        drill.wait_for("the deletion is reported", Duration::from_secs(30), || {
            drill.log().contains("was deleted")
        });
        assert_says("deleted", &drill.log(), &["in.txt", "deleted", "created"]);
        create_new(input, "j", 100)
    });
}
