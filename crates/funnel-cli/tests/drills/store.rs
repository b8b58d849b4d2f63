//! The store file corrupted while Funnel is stopped: bytes flipped, the file emptied,
//! cut short, overwritten, or a stored position changed. Funnel must not panic and must
//! not skip records: it either runs on (an unused page was hit) and loses nothing, or
//! stops with an error naming the store and `funnel store repair`; after the repair it
//! runs to the end and every record is in the output at least once (a position lost to
//! the damage is read again from the start).

use std::time::Duration;

use crate::harness::{Drill, Rng, assert_nothing_lost, assert_says, generator_positions, tail};
use crate::pipelines::generator_to_file;

const N: u64 = 20_000;

/// Runs generator -> file until part of the records are written and stops it, corrupts
/// the store with `corrupt`, then runs it to the end as an operator would. With
/// `detected`, the damage must stop Funnel (it is never an unused part of the file).
fn drill_store_corruption(
    name: &str,
    detected: bool,
    corrupt: impl FnOnce(&mut Vec<u8>, &mut Rng),
) {
    let mut rng = Rng::new(name);
    let drill = Drill::new(&generator_to_file(N, 10_000, "./out.jsonl"));
    let mut funnel = drill.start(&[]);
    let part = usize::try_from(rng.between(1000, 8000)).unwrap();
    drill.wait_for(
        "part of the records are written",
        Duration::from_secs(60),
        || drill.records("out.jsonl").len() >= part,
    );
    assert!(
        funnel.signal("TERM", &drill).success(),
        "{}",
        tail(&drill.log())
    );

    let store = drill.path("funnel.db");
    let mut bytes = std::fs::read(&store).unwrap();
    corrupt(&mut bytes, &mut rng);
    std::fs::write(&store, &bytes).unwrap();
    drill.mark(&format!("{name}: the store is corrupted"));

    let (status, log) = drill.run_to_end(&[]);
    assert_ne!(
        status.code(),
        Some(101),
        "{name}: funnel panicked:\n{}",
        tail(&log)
    );
    assert!(
        !detected || !status.success(),
        "{name}: funnel ran on a damaged store:\n{}",
        tail(&log)
    );
    if !status.success() {
        assert_says(name, &log, &["funnel.db", "funnel store repair"]);
        let (repaired, text) = drill.funnel(&["store", "repair", "--db.redb.path", "funnel.db"]);
        assert!(
            repaired.success(),
            "{name}: funnel store repair failed: {text}"
        );
        let (status, log) = drill.run_to_end(&[]);
        assert!(
            status.success(),
            "{name}: no run after the repair:\n{}",
            tail(&log)
        );
    }
    let got = generator_positions(&drill.records("out.jsonl"));
    assert_nothing_lost(name, 1..=N, &got, &drill);
}

#[test]
fn flipped_bytes_in_the_store_never_panic_nor_lose_records() {
    drill_store_corruption("store_flipped_bytes", false, |bytes, rng| {
        for _ in 0..rng.between(1, 8) {
            let at = usize::try_from(rng.between(0, bytes.len() as u64 - 1)).unwrap();
            bytes[at] ^= 1 << rng.between(0, 7);
        }
    });
}

#[test]
fn an_emptied_store_is_an_error_naming_the_repair_not_a_new_store() {
    drill_store_corruption("store_emptied", true, |bytes, _| bytes.clear());
}

#[test]
fn a_store_cut_short_never_panics_nor_loses_records() {
    drill_store_corruption("store_cut_short", false, |bytes, rng| {
        let keep = usize::try_from(rng.between(1, bytes.len() as u64 - 1)).unwrap();
        bytes.truncate(keep);
    });
}

#[test]
fn a_store_overwritten_with_garbage_never_panics_nor_loses_records() {
    drill_store_corruption("store_garbage", true, |bytes, rng| {
        for b in bytes.iter_mut() {
            *b = u8::try_from(rng.between(0, 255)).unwrap();
        }
    });
}

#[test]
fn a_changed_position_value_in_the_store_does_not_skip_records() {
    drill_store_corruption("store_position_changed", true, |bytes, _| {
        // The generator's positions are decimal text: raise every stored number of four
        // digits or more (the committed position and its older copies) to 9s, which
        // would skip records if it were believed.
        let mut changed = 0;
        let mut i = 0;
        while i < bytes.len() {
            let run = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            if run >= 4 {
                bytes[i..i + run].fill(b'9');
                changed += 1;
            }
            i += run.max(1);
        }
        assert!(changed > 0, "no position found in the store");
    });
}
