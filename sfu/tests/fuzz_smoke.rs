//! The fuzz targets (`sfu::fuzz_targets`) in the test command: each gets valid seeds, random
//! bytes and mutations of the seeds (bit flips, truncations, insertions, splices), a fixed
//! number of inputs from a fixed seed so a failure reproduces. Coverage-guided runs of the same
//! bodies: `scripts/fuzz.sh`. `FUZZ_SMOKE_RUNS` sets the inputs per target.

use sfu::fuzz_targets::{TARGETS, seeds};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A variant of `seed`: a few random edits.
fn mutate(rng: &mut Rng, seed: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let i = rng.below(v.len() + 1);
                let n = 1 + rng.below(8);
                let extra = rng.bytes(n);
                v.splice(i..i, extra);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let (i, j) = (rng.below(v.len() + 1), rng.below(other.len() + 1));
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            _ => {
                // interesting values at a random place
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)];
                }
            }
        }
    }
    v
}

#[test]
fn every_fuzz_target_survives_random_and_mutated_inputs() {
    let runs: usize = std::env::var("FUZZ_SMOKE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    for &(name, target) in TARGETS {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let seeds = seeds::of(name);
        for s in &seeds {
            target(s);
        }
        for i in 0..runs {
            let input = if i % 4 == 0 {
                let len = rng.below(256);
                rng.bytes(len)
            } else {
                let seed = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, seed, &seeds)
            };
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(outcome.is_ok(), "target {name} panicked on input {input:02x?}");
        }
        println!("fuzz smoke: {name}: {} seeds, {runs} inputs, no panic", seeds.len());
    }
}

/// Writes every target's seeds into `$FUZZ_SEED_DIR/<target>/` (libFuzzer corpora start from
/// them: `scripts/fuzz.sh`).
#[test]
#[ignore = "run by scripts/fuzz.sh"]
fn write_seed_corpora() {
    let Ok(dir) = std::env::var("FUZZ_SEED_DIR") else { return };
    for &(name, _) in TARGETS {
        let target = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&target).unwrap();
        for (i, seed) in seeds::of(name).iter().enumerate() {
            std::fs::write(target.join(format!("seed-{i}")), seed).unwrap();
        }
    }
}
