# The justfile runs exactly what CI runs (.ci/run). `just ci` before you stop.

# Run every bundled scenario on seed 1 and judge it (README's first command).
run:
    cargo run --release -p scenarios --bin jetsam -- run scenarios

# The test suite (README's second command).
test:
    cargo test --workspace

fmt:
    cargo fmt --all -- --check

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

bench:
    cargo bench -p benches

# Seed sweeps belong here, not in CI.
explore scenario seeds="0..1000" *flags="":
    cargo run --release -p scenarios --bin jetsam -- explore {{scenario}} --seeds {{seeds}} {{flags}}

# Regenerate the committed reports under reports/ (review the diff; tests check them).
reports:
    cargo run --release -p scenarios --bin jetsam -- reports

ci:
    bash .ci/run

# Mutation testing of the delivery-critical files (issue 16), outside CI: every mutant is a
# rebuild and a test run, so all three take hours; name one file to go faster
# (`just mutants models/src/nsq/diskqueue.rs`). Needs cargo-mutants (Debian's package, or
# `cargo install --locked cargo-mutants`); results land in mutants.out/.
mutants *files="models/src/nsq/channel.rs models/src/nsq/diskqueue.rs sim/src/checker/*.rs":
    #!/usr/bin/env bash
    set -euf -o pipefail  # -f: the globs go to cargo-mutants, not to the shell
    args=()
    for file in {{files}}; do args+=(--file "$file"); done
    cargo mutants "${args[@]}"
