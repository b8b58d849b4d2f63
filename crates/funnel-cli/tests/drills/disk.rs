//! The disk filling up: the file destination's output, or the store, on a small tmpfs
//! that fills; once space is freed, Funnel carries on (by itself, or when started
//! again) and nothing is lost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{Drill, assert_nothing_lost, assert_says, generator_positions, skip};
use crate::pipelines::generator_to_file;

/// A tmpfs of a given size mounted in a drill's directory; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`256k`) at `path`, or `None` (the drill is skipped)
    /// when not root outside CI.
    fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        if out.status.success() {
            return Some(Self {
                path: path.to_path_buf(),
            });
        }
        skip(
            "cannot mount a tmpfs (the disk drills need root)",
            &String::from_utf8_lossy(&out.stderr),
        );
        None
    }

    /// Gives the tmpfs a new size.
    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remounting the tmpfs failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the filesystem of `dir` with a file `filler` until it is full.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

#[test]
fn generator_to_file_loses_no_record_when_the_output_disk_fills_and_space_comes_back() {
    const N: u64 = 5000;
    let drill = Drill::new(&generator_to_file(N, 0, "./mnt/out.jsonl"));
    let Some(tmpfs) = Tmpfs::mount(&drill.path("mnt"), "128k") else {
        return;
    };
    let mut funnel = drill.start(&["--pipelines.exit-on-done"]);
    drill.wait_for("the disk is full", Duration::from_secs(60), || {
        drill.log().contains("No space left on device")
    });
    drill.mark("the disk has space again");
    tmpfs.resize("32m");
    let status = funnel.wait(Duration::from_secs(120), &drill);
    assert!(status.success(), "{}", crate::harness::tail(&drill.log()));
    let got = generator_positions(&drill.records("mnt/out.jsonl"));
    assert_nothing_lost("output_disk_full", 1..=N, &got, &drill);
    // The error names the file and the cause, and says Funnel retries by itself.
    assert_says(
        "output_disk_full",
        &drill.log(),
        &[
            "mnt/out.jsonl",
            "No space left on device",
            "restarting with backoff",
        ],
    );
}

#[test]
fn generator_to_file_loses_no_record_when_the_store_disk_fills_and_funnel_is_killed() {
    const N: u64 = 20_000;
    let drill = Drill::new(&generator_to_file(N, 5000, "./out.jsonl"))
        .with_args(&["--db.redb.path", "./mnt/funnel.db"]);
    let Some(tmpfs) = Tmpfs::mount(&drill.path("mnt"), "1m") else {
        return;
    };
    let mut funnel = drill.start(&[]);
    drill.wait_for("records are written", Duration::from_secs(60), || {
        drill.records("out.jsonl").len() > 1000
    });
    drill.mark("filling the store's disk");
    fill(&tmpfs.path);
    std::thread::sleep(Duration::from_millis(500));
    funnel.signal("KILL", &drill);
    // Started on a full disk, Funnel runs on (the store reuses its pages) or reports
    // the full disk and retries; it never loses what it committed.
    let from = drill.log().len();
    let mut funnel = drill.start(&["--pipelines.exit-on-done"]);
    drill.wait_for(
        "a full disk is reported, or the run ends",
        Duration::from_secs(60),
        || {
            drill.log()[from..].contains("No space left on device")
                || drill.log()[from..].contains("pipeline summary")
        },
    );
    let log = drill.log()[from..].to_owned();
    if log.contains("No space left on device") {
        assert_says(
            "store_disk_full",
            &log,
            &["mnt/funnel.db", "No space left on device"],
        );
    }
    drill.mark("the disk has space again");
    std::fs::remove_file(tmpfs.path.join("filler")).unwrap();
    let status = funnel.wait(Duration::from_secs(120), &drill);
    assert!(status.success(), "{}", crate::harness::tail(&drill.log()));
    let got = generator_positions(&drill.records("out.jsonl"));
    assert_nothing_lost("store_disk_full", 1..=N, &got, &drill);
}
