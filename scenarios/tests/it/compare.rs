//! `jetsam compare`: the matrix counts what each seed showed, whatever the number of jobs.

use super::load;
use scenarios::compare::compare;

#[test]
fn the_matrix_counts_each_variants_seeds_and_does_not_depend_on_jobs() {
    let variants = vec![
        load("scenarios/go-channel/fifo-no-faults.toml"),
        load("scenarios/go-channel/kill-loses-buffered.toml"),
        load("scenarios/go-channel/swarm-careless.toml"),
    ];
    let one = compare(&variants, 0..8, 1, &|_, _| {});
    let three = compare(&variants, 0..8, 3, &|_, _| {});
    assert_eq!(one, three);
    let cell = |row: usize, property: &str| one.rows[row].cells[property].clone();
    assert_eq!(cell(0, "exactly-once").violated, 0, "no faults: held 8/8");
    assert_eq!(cell(0, "exactly-once").seeds, 8);
    assert_eq!(
        cell(1, "no-loss").violated,
        8,
        "the kill loses the buffer on every seed"
    );
    assert_eq!(cell(1, "no-loss").smallest_seed, Some(0));
    assert!(cell(1, "no-loss").anomaly_kinds.contains("lost"));
    // The careless shutdown's phantoms depend on the seed: the smallest one is reported.
    let phantom = cell(2, "no-phantom");
    assert!(phantom.violated > 0 && phantom.violated < 8, "{phantom:?}");
    let markdown = one.markdown();
    assert!(
        markdown.contains("| no-loss |")
            && markdown.contains("held 8/8")
            && markdown.contains("**violated 8/8**")
    );
}
