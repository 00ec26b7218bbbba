//! Bounded fuzzing of every parser: random bytes, truncations, bit flips,
//! insertions and deletions of recorded good replies (seeded, so a failure
//! repeats). No input may panic, and a reply is only accepted if it is
//! well-formed by an independent description of the protocol. None of these
//! protocols has a checksum, so a flip that yields another well-formed reply
//! (a `0` bit that became `1`) cannot be told from a real one; everything else
//! must be refused, which the driver task counts and ignores.

use super::{apc, nut, q1};
use std::collections::HashMap;

const CASES: usize = 100_000;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of one of `good`.
fn mutate(rng: &mut XorShift, good: &[&[u8]]) -> Vec<u8> {
    let mut v = good[rng.below(good.len())].to_vec();
    match rng.below(5) {
        0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        1 => {
            v.truncate(rng.below(v.len()));
            v
        }
        2 => {
            for _ in 0..=rng.below(3) {
                let at = rng.below(v.len());
                if let Some(b) = v.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
            }
            v
        }
        3 => {
            let at = rng.below(v.len() + 1);
            v.insert(at, rng.next() as u8);
            v
        }
        _ => {
            if !v.is_empty() {
                v.remove(rng.below(v.len()));
            }
            v
        }
    }
}

/// `digits(.digits)?`, or only dashes and dots (a missing sensor).
fn number_like(s: &str) -> bool {
    let dashes = !s.is_empty() && s.bytes().all(|b| b == b'-' || b == b'.');
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    dashes || (digits(int) && frac.is_none_or(digits))
}

fn q1_well_formed(reply: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(reply) else {
        return false;
    };
    let Some(body) = text.strip_prefix('(') else {
        return false;
    };
    let fields: Vec<&str> = body.split(' ').collect();
    fields.len() == 8
        && fields[..7].iter().all(|f| number_like(f))
        && fields[7].len() == 8
        && fields[7].bytes().all(|b| b == b'0' || b == b'1')
}

#[test]
fn q1_replies() {
    let good: &[&[u8]] = &[
        b"(226.0 195.0 226.0 014 49.0 27.5 30.0 00001000",
        b"(208.4 140.0 208.4 034 59.9 2.05 35.0 11000110",
        b"(230.0 230.0 230.0 012 50.0 13.6 --.- 00001001",
    ];
    let mut rng = XorShift(0x5eed_0001);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..CASES {
        let input = mutate(&mut rng, good);
        match q1::parse_status(&input) {
            Ok(reply) => {
                accepted += 1;
                assert!(q1_well_formed(&input), "accepted {input:?}");
                let _ = q1::status(&reply, Some(&q1::Battery::detect(12.0, 13.0)));
            }
            Err(_) => refused += 1,
        }
        let _ = q1::parse_ratings(&input);
    }
    assert!(accepted > 0 && refused > CASES / 2, "{accepted} {refused}");
}

#[test]
fn apc_replies() {
    let good: &[&[u8]] = &[b"08", b"50", b"100.0", b"0042:", b"230.4", b"NA", b"27.37"];
    let mut rng = XorShift(0x5eed_0002);
    let mut status = apc::status(0x08, &apc::Values::default());
    for _ in 0..CASES {
        let input = mutate(&mut rng, good);
        if apc::parse_flags(&input).is_ok() {
            assert!(input.len() == 2 && input.iter().all(u8::is_ascii_hexdigit));
        }
        if let Ok(Some(_)) = apc::parse_number(&input) {
            let text = std::str::from_utf8(&input).unwrap();
            assert!(
                number_like(text.strip_suffix(':').unwrap_or(text)),
                "{input:?}"
            );
        }
        // Stray bytes taken for alerts change only alert-named fields.
        for &b in &input {
            let before = status.clone();
            apc::apply_alert(&mut status, b);
            if !apc::ALERTS.contains(&b) {
                assert_eq!(status, before);
            }
        }
    }
}

#[test]
fn nut_replies() {
    let good: &[&[u8]] = &[
        b"BEGIN LIST VAR rack",
        b"VAR rack ups.status \"OB LB\"",
        b"VAR rack battery.charge \"57\"",
        b"VAR rack device.mfr \"a \\\"b\\\"\"",
        b"END LIST VAR rack",
        b"ERR DATA-STALE",
    ];
    let mut rng = XorShift(0x5eed_0003);
    for _ in 0..CASES {
        let input = mutate(&mut rng, good);
        let mut vars = HashMap::new();
        if let Ok(false) = nut::list_line("rack", &input, &mut vars) {
            // Words may be quoted and spaced freely, as upsd's tokenizer allows.
            let text = std::str::from_utf8(&input).unwrap();
            let first = text.trim_start_matches([' ', '"']);
            assert!(
                first.starts_with("BEGIN") || first.starts_with("VAR"),
                "{text:?}"
            );
        }
        let _ = nut::status(&vars);
    }
}
