#!/usr/bin/env bash
# Coverage-guided fuzzing of the bodies in sfu/src/fuzz_targets.rs with libFuzzer (fuzz/,
# libfuzzer-sys), on stable Rust: sanitizer-coverage instrumentation, no ASan (safe Rust; a
# panic is the finding). Bounded: each target runs FUZZ_SECONDS (default 60) or FUZZ_RUNS
# executions, whichever the caller sets, then the next.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   FUZZ_RUNS=10000000 scripts/fuzz.sh vp8 munger
#
# Corpora grow in target/fuzz-corpus/<target> (kept between runs); a crash leaves its input in
# target/fuzz-artifacts/<target>/ and the script exits 1. Prints executions per target.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(stun vp8 h264 munger temporal rtcp sdp signal token srtp dtls turn)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/fuzz}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
host="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps build scripts and proc macros uninstrumented
cargo build --release --locked --manifest-path fuzz/Cargo.toml --target "$host" --bins

# corpora start from the valid inputs of sfu/src/fuzz_targets/seeds.rs (a DTLS ClientHello,
# authentic SRTP packets, ...): random bytes rarely reach past the first length check
FUZZ_SEED_DIR="$PWD/target/fuzz-corpus" CARGO_TARGET_DIR="$PWD/target" RUSTFLAGS="" \
  cargo test --locked -q -p sfu --test fuzz_smoke -- --ignored --exact write_seed_corpora >/dev/null

limit=(-max_total_time="${FUZZ_SECONDS:-60}")
[ -z "${FUZZ_RUNS:-}" ] || limit=(-runs="$FUZZ_RUNS")
failed=0
printf '%-10s %14s %10s %8s\n' target executions exec/s result
for t in "${targets[@]}"; do
  corpus="target/fuzz-corpus/$t" artifacts="target/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  log="$CARGO_TARGET_DIR/$t.log"
  if "$CARGO_TARGET_DIR/$host/release/$t" "$corpus" "${limit[@]}" -print_final_stats=1 \
      -artifact_prefix="$artifacts/" -max_len=4096 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH; failed=1
    tail -30 "$log" >&2
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/.*exec\/s: *\([0-9]*\).*/\1/p' "$log" | tail -1)"
  printf '%-10s %14s %10s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$result"
done
exit "$failed"
