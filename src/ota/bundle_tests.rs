//! Bundles round-trip; every truncation and every flipped byte is refused.

use super::*;
use std::collections::BTreeMap;

/// Bytes that compress somewhat, like a file system image.
fn image(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if i % 7 < 3 {
                0
            } else {
                (state % 23) as u8
            }
        })
        .collect()
}

struct Made {
    _dir: tempfile::TempDir,
    bundle: Vec<u8>,
    key: SigningKey,
    images: BTreeMap<String, Vec<u8>>,
}

fn make(payloads: &[(&str, usize)]) -> Made {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut images = BTreeMap::new();
    let mut files = Vec::new();
    for (i, (name, len)) in payloads.iter().enumerate() {
        let bytes = image(*len, i as u32 + 1);
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        images.insert(name.to_string(), bytes);
        files.push((*name, path));
    }
    let output = dir.path().join("update.obb");
    let contents = Contents {
        version: "1.2.0",
        compatible: &["x86_64".into(), "rpi4".into()],
        images: &files,
        level: 3,
    };
    create(&contents, &key, &output).unwrap();
    Made {
        bundle: std::fs::read(&output).unwrap(),
        _dir: dir,
        key,
        images,
    }
}

/// Collects what a bundle would write.
#[derive(Default)]
struct Collect(BTreeMap<String, Vec<u8>>);

impl Sink for Collect {
    fn group(&mut self, payload: &Payload, offset: u64, data: &[u8]) -> io::Result<()> {
        let image = self.0.entry(payload.name.clone()).or_default();
        assert_eq!(image.len() as u64, offset, "groups arrive in order");
        image.extend_from_slice(data);
        Ok(())
    }

    fn payload_done(&mut self, _: &Payload) -> io::Result<()> {
        Ok(())
    }
}

fn read(bundle: &[u8], key: &VerifyingKey) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let opened = open(bundle, key).map_err(|e| e.to_string())?;
    let mut sink = Collect::default();
    opened.stream(&mut sink).map_err(|e| e.to_string())?;
    Ok(sink.0)
}

#[test]
fn a_bundle_gives_back_its_images_exactly() {
    // Two groups and a partial block in the root file system.
    let made = make(&[
        ("rootfs", GROUP_BYTES + 5 * BLOCK_SIZE + 123),
        ("boot", 3000),
    ]);
    let images = read(&made.bundle, &made.key.verifying_key()).unwrap();
    assert_eq!(images, made.images);
    let manifest = open(&made.bundle[..], &made.key.verifying_key())
        .unwrap()
        .manifest;
    assert_eq!(manifest.version, "1.2.0");
    assert_eq!(manifest.payloads[0].groups.len(), 2);
    assert_eq!(
        manifest.bundle_size(0) as usize + header_len(&made.bundle),
        made.bundle.len()
    );
}

fn header_len(bundle: &[u8]) -> usize {
    let len = u32::from_le_bytes(bundle[8..12].try_into().unwrap()) as usize;
    12 + len + SIGNATURE_LEN
}

#[test]
fn another_key_is_refused() {
    let made = make(&[("rootfs", 5000)]);
    let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
    assert!(matches!(
        open(&made.bundle[..], &other),
        Err(BundleError::BadSignature)
    ));
}

/// What a bundle of `rootfs` only must fit on `board` running `running`.
fn fit<'a>(board: &'a str, running: &'a str, force: bool) -> Fit<'a> {
    Fit {
        board,
        running,
        minimum: None,
        partitions: &["rootfs"],
        force,
    }
}

#[test]
fn the_board_and_the_version_must_fit() {
    let made = make(&[("rootfs", 5000)]);
    let manifest = open(&made.bundle[..], &made.key.verifying_key())
        .unwrap()
        .manifest;
    assert!(manifest.check_fits(&fit("x86_64", "1.1.9", false)).is_ok());
    assert!(
        manifest.check_fits(&fit("rpi4", "1.2.0", false)).is_ok(),
        "the same version may be installed again"
    );
    let other_board = manifest
        .check_fits(&fit("rpi5", "1.0.0", false))
        .unwrap_err()
        .to_string();
    assert!(
        other_board.contains("x86_64, rpi4") && other_board.contains("rpi5"),
        "{other_board}"
    );
    let older = manifest
        .check_fits(&fit("x86_64", "1.10.0", false))
        .unwrap_err()
        .to_string();
    assert!(older.contains("older than the running 1.10.0"), "{older}");
    assert!(manifest.check_fits(&fit("x86_64", "1.10.0", true)).is_ok());
}

#[test]
fn a_minimum_version_holds_even_when_forced() {
    let made = make(&[("rootfs", 5000)]);
    let manifest = open(&made.bundle[..], &made.key.verifying_key())
        .unwrap()
        .manifest;
    let floor = |minimum| Fit {
        minimum: Some(minimum),
        ..fit("x86_64", "1.3.0", true)
    };
    let refused = manifest
        .check_fits(&floor("1.2.1"))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("below this firmware's minimum 1.2.1"),
        "{refused}"
    );
    assert!(manifest.check_fits(&floor("1.2.0")).is_ok());
}

#[test]
fn the_payloads_must_be_the_slots_partitions() {
    let pi = make(&[("rootfs", 5000), ("boot", 700)]);
    let pi = open(&pi.bundle[..], &pi.key.verifying_key())
        .unwrap()
        .manifest;
    let rootfs_only = make(&[("rootfs", 5000)]);
    let rootfs_only = open(&rootfs_only.bundle[..], &rootfs_only.key.verifying_key())
        .unwrap()
        .manifest;
    let pi_slot = Fit {
        partitions: &["rootfs", "boot"],
        ..fit("rpi4", "1.0.0", false)
    };
    assert!(pi.check_fits(&pi_slot).is_ok());
    let no_boot = rootfs_only.check_fits(&pi_slot).unwrap_err().to_string();
    assert!(
        no_boot.contains("payloads (rootfs) do not match this board's slots (boot, rootfs)"),
        "{no_boot}"
    );
    let extra_boot = pi
        .check_fits(&fit("x86_64", "1.0.0", false))
        .unwrap_err()
        .to_string();
    assert!(
        extra_boot.contains("(boot, rootfs) do not match"),
        "{extra_boot}"
    );
}

#[test]
fn a_bundle_for_an_unknown_board_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("rootfs");
    std::fs::write(&image, [1; 100]).unwrap();
    let contents = Contents {
        version: "1.0.0",
        compatible: &["x86-64".into()],
        images: &[("rootfs", image)],
        level: 3,
    };
    let refused = create(
        &contents,
        &SigningKey::from_bytes(&[7; 32]),
        &dir.path().join("out.obb"),
    )
    .unwrap_err()
    .to_string();
    assert!(refused.contains("unknown board 'x86-64'"), "{refused}");
}

/// The check before the write: every cut and every flipped byte after the
/// header is refused without unpacking anything.
#[test]
fn the_whole_bundle_check_refuses_every_damage_past_the_header() {
    let made = make(&[("rootfs", 2 * GROUP_BYTES + 100), ("boot", 700)]);
    let key = made.key.verifying_key();
    let check = |bytes: &[u8]| open(bytes, &key).and_then(Opened::check);
    check(&made.bundle).unwrap();
    let header = header_len(&made.bundle);
    let len = made.bundle.len();
    for cut in [header + 1, len / 2, len - 1] {
        assert!(check(&made.bundle[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = made.bundle.clone();
    longer.push(0);
    assert!(matches!(check(&longer), Err(BundleError::TrailingData)));
    let mut bundle = made.bundle.clone();
    for at in (header..len).step_by(997).chain([len - 1]) {
        bundle[at] ^= 0x40;
        assert!(check(&bundle).is_err(), "byte {at} flipped");
        bundle[at] ^= 0x40;
    }
}
#[test]
fn versions_compare_number_by_number() {
    assert!(parse_version("1.10.0") > parse_version("1.9.7"));
    assert_eq!(parse_version("2"), Some(vec![2]));
    for bad in ["", "1.", "v1.0", "1.0-rc1", "1..2"] {
        assert_eq!(parse_version(bad), None, "{bad}");
    }
}

#[test]
fn anything_else_is_not_a_bundle() {
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    assert!(matches!(
        open(&b"GIF89a and more bytes"[..], &key),
        Err(BundleError::NotABundle)
    ));
    let mut huge = MAGIC.to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        open(&huge[..], &key),
        Err(BundleError::Manifest(_))
    ));
}

#[test]
fn every_truncation_is_refused() {
    let made = make(&[("rootfs", 2 * BLOCK_SIZE + 100), ("boot", 700)]);
    let key = made.key.verifying_key();
    for len in 0..made.bundle.len() {
        let refused = read(&made.bundle[..len], &key);
        assert!(
            refused.is_err(),
            "a bundle cut to {len} of {} bytes was accepted",
            made.bundle.len()
        );
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    let made = make(&[("rootfs", 2 * BLOCK_SIZE + 100), ("boot", 700)]);
    let key = made.key.verifying_key();
    let mut bundle = made.bundle.clone();
    for at in 0..bundle.len() {
        for bit in [0x01, 0x80] {
            bundle[at] ^= bit;
            let refused = read(&bundle, &key);
            bundle[at] ^= bit;
            assert!(
                refused.is_err(),
                "flipping bit {bit:#x} of byte {at} went unnoticed"
            );
        }
    }
    assert_eq!(read(&bundle, &key).unwrap(), made.images);
}

#[test]
fn extra_bytes_after_the_bundle_are_refused() {
    let mut made = make(&[("rootfs", 5000)]);
    made.bundle.push(0);
    let refused = read(&made.bundle, &made.key.verifying_key()).unwrap_err();
    assert!(refused.contains("extra bytes"), "{refused}");
}

#[test]
fn a_corrupt_block_is_caught_before_it_is_written() {
    // Re-sign a bundle whose manifest still matches but one block's bytes
    // differ: only the per-block hash can notice, and it must, before the
    // sink sees the group.
    let made = make(&[("rootfs", 3 * BLOCK_SIZE)]);
    let key = made.key.verifying_key();
    let header = header_len(&made.bundle);
    let hashes_end = header + 3 * HASH_LEN;
    let mut bundle = made.bundle.clone();
    // Swap the first two block hashes' worth of meaning by corrupting a hash:
    // the group's hash list then no longer matches the manifest.
    bundle[hashes_end - 1] ^= 1;
    let refused = read(&bundle, &key).unwrap_err();
    assert!(refused.contains("block hashes of group 0"), "{refused}");
}

#[test]
fn keys_are_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = (dir.path().join("k"), dir.path().join("k.pub"));
    generate_keys(&secret, &public).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let signing = read_secret_key(&secret).unwrap();
    assert_eq!(read_public_key(&public).unwrap(), signing.verifying_key());
    assert!(
        generate_keys(&secret, &public).is_err(),
        "never overwrites a key"
    );
    std::fs::write(&public, "not hex\n").unwrap();
    assert!(read_public_key(&public)
        .unwrap_err()
        .to_string()
        .contains("64 hex digits"));
}

/// A bundle's label must be what its rootfs says it is: its version, and a
/// board the bundle names.
#[test]
fn the_rootfs_firmware_must_carry_the_bundle_version_and_board() {
    let text = r#"{"board": "rpi4", "version": "1.2.0", "watchdog": "/dev/watchdog"}"#;
    let boards = |b: &[&str]| b.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    check_rootfs_firmware(text, "1.2.0", &boards(&["rpi4"])).unwrap();
    check_rootfs_firmware(text, "1.2.0", &boards(&["x86_64", "rpi4"])).unwrap();
    let older = check_rootfs_firmware(text, "1.3.0", &boards(&["rpi4"]))
        .unwrap_err()
        .to_string();
    assert!(
        older.contains("says version 1.2.0 for rpi4, but the bundle is version 1.3.0 for rpi4"),
        "{older}"
    );
    let other = check_rootfs_firmware(text, "1.2.0", &boards(&["rpi5"]))
        .unwrap_err()
        .to_string();
    assert!(other.contains("version 1.2.0 for rpi5"), "{other}");
    // An unstamped template (image/stamp-firmware never ran) is refused too.
    let template = r#"{"board": "rpi4", "version": "@VERSION@"}"#;
    assert!(check_rootfs_firmware(template, "1.2.0", &boards(&["rpi4"])).is_err());
    let broken = check_rootfs_firmware(r#"{"board": "rpi4"}"#, "1.2.0", &boards(&["rpi4"]))
        .unwrap_err()
        .to_string();
    assert!(broken.contains("missing field `version`"), "{broken}");
}

/// Images that are not ext2/3/4 file systems carry nothing to read, and are
/// packed as they are.
#[test]
fn a_rootfs_that_is_not_ext4_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("rootfs");
    std::fs::write(&image, [0x53; 4096]).unwrap();
    assert!(rootfs_firmware(&image).unwrap().is_none());
    std::fs::write(&image, [1; 100]).unwrap();
    assert!(rootfs_firmware(&image).unwrap().is_none());
}
