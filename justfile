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
