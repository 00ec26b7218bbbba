//! The Raspberry Pi disk images and the buildroot tree, checked without
//! building firmware. genimage (Debian's, on PATH) builds the Pi 4 and Pi 5
//! images through `buildroot/board/rpi/post-image.sh` from tiny stand-in
//! inputs; the partition table, the files in each partition and their
//! agreement with autoboot.txt, cmdline.txt and firmware.json are then read
//! back from the image itself. The buildroot tree is checked for the files
//! its Config.in, packages and defconfigs name, and the x86_64 firmware.json
//! against the prefix GRUB is given.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MIB: u64 = 1024 * 1024;
const SECTOR: u64 = 512;

fn repo(path: &str) -> PathBuf {
    Path::new(ROOT).join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a tool with the sbin directories on PATH (mkfs, sfdisk live there)
/// and returns its stdout; a failure panics with its stderr.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let path = format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(program)
        .args(args)
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn genimage_missing() -> bool {
    let found = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|dir| Path::new(dir).join("genimage").is_file());
    if !found {
        // CI installs genimage (scripts/install-deps test): never skip there.
        assert!(
            std::env::var_os("CI").is_none(),
            "genimage is not installed in CI (scripts/install-deps test)"
        );
        eprintln!("skipped: genimage is not installed (apt-get install genimage)");
    }
    !found
}

/// One partition of the table as `sfdisk --json` reports it.
#[derive(Debug)]
struct Partition {
    number: u32,
    start: u64,
    size: u64,
    kind: String,
    bootable: bool,
}

impl Partition {
    fn offset(&self) -> u64 {
        self.start * SECTOR
    }
    fn bytes(&self) -> u64 {
        self.size * SECTOR
    }
}

struct Disk {
    image: PathBuf,
    id: String,
    partitions: BTreeMap<u32, Partition>,
}

impl Disk {
    fn read(image: &Path) -> Disk {
        let json: Value =
            serde_json::from_str(&run("sfdisk", &["--json", image.to_str().unwrap()], &[]))
                .unwrap();
        let table = &json["partitiontable"];
        assert_eq!(table["label"], "dos", "the Pi boots from an MBR");
        assert_eq!(table["sectorsize"], 512);
        let image_name = image.to_str().unwrap();
        let partitions = table["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let node = p["node"].as_str().unwrap();
                let number = node.strip_prefix(image_name).unwrap().parse().unwrap();
                let partition = Partition {
                    number,
                    start: p["start"].as_u64().unwrap(),
                    size: p["size"].as_u64().unwrap(),
                    kind: p["type"].as_str().unwrap().to_string(),
                    bootable: p["bootable"].as_bool().unwrap_or(false),
                };
                (number, partition)
            })
            .collect();
        Disk {
            image: image.to_path_buf(),
            id: table["id"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x")
                .to_string(),
            partitions,
        }
    }

    fn partition(&self, number: u32) -> &Partition {
        self.partitions
            .get(&number)
            .unwrap_or_else(|| panic!("no partition {number} in {:?}", self.partitions))
    }

    /// The `-i` argument mtools takes for a FAT file system inside the image.
    fn mtools_image(&self, number: u32) -> String {
        format!(
            "{}@@{}",
            self.image.display(),
            self.partition(number).offset()
        )
    }

    fn fat_files(&self, number: u32) -> BTreeSet<String> {
        run("mdir", &["-b", "-i", &self.mtools_image(number), "::"], &[])
            .lines()
            .map(|l| l.trim_start_matches("::/").to_string())
            .collect()
    }

    fn fat_file(&self, number: u32, name: &str) -> String {
        run(
            "mtype",
            &["-i", &self.mtools_image(number), &format!("::{name}")],
            &[],
        )
    }

    fn bytes(&self, number: u32, len: u64) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.image).unwrap();
        file.seek(SeekFrom::Start(self.partition(number).offset()))
            .unwrap();
        let mut buf = vec![0; len as usize];
        file.read_exact(&mut buf).unwrap();
        buf
    }

    /// The ext4 superblock's magic and volume name, read from the image.
    fn ext4_label(&self, number: u32) -> String {
        let head = self.bytes(number, 2048);
        let superblock = &head[1024..];
        assert_eq!(
            &superblock[0x38..0x3a],
            &[0x53, 0xef],
            "partition {number} holds no ext4 file system"
        );
        let name = &superblock[0x78..0x88];
        String::from_utf8_lossy(name)
            .trim_end_matches('\0')
            .to_string()
    }
}

/// The `boot_partition` values of autoboot.txt's `[all]` and `[tryboot]`
/// sections, after checking that `tryboot_a_b=1` is set for all boots.
fn autoboot_partitions(text: &str) -> (u32, u32) {
    let mut section = "";
    let mut values: BTreeMap<(String, String), String> = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        values.insert((section.into(), key.into()), value.into());
    }
    let get = |section: &str, key: &str| {
        values
            .get(&(section.to_string(), key.to_string()))
            .unwrap_or_else(|| panic!("autoboot.txt has no {key} in [{section}]"))
            .clone()
    };
    assert_eq!(get("all", "tryboot_a_b"), "1");
    (
        get("all", "boot_partition").parse().unwrap(),
        get("tryboot", "boot_partition").parse().unwrap(),
    )
}

/// The stand-in boot inputs buildroot would leave in BINARIES_DIR for a
/// board: kernel, device trees and (Pi 4 only) GPU firmware.
fn boot_inputs(board: &str) -> &'static [&'static str] {
    match board {
        "rpi4" => &[
            "Image",
            "bcm2711-rpi-4-b.dtb",
            "bcm2711-rpi-400.dtb",
            "bcm2711-rpi-cm4.dtb",
            "rpi-firmware/start4cd.elf",
            "rpi-firmware/fixup4cd.dat",
        ],
        "rpi5" => &[
            "Image",
            "bcm2712-rpi-5-b.dtb",
            "bcm2712d0-rpi-5-b.dtb",
            "bcm2712-rpi-500.dtb",
        ],
        _ => unreachable!(),
    }
}

fn check_rpi_image(board: &str, serial_console: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    let build = tmp.path().join("build");
    std::fs::create_dir_all(images.join("rpi-firmware")).unwrap();
    std::fs::create_dir_all(&build).unwrap();
    for input in boot_inputs(board) {
        std::fs::write(images.join(input), format!("stand-in {input}\n")).unwrap();
    }
    let rootfs = images.join("rootfs.ext4");
    run(
        "mkfs.ext4",
        &["-q", "-L", "stand-in", rootfs.to_str().unwrap(), "4M"],
        &[],
    );

    run(
        repo("buildroot/board/rpi/post-image.sh").to_str().unwrap(),
        &[images.to_str().unwrap(), board],
        &[("BUILD_DIR", build.to_str().unwrap())],
    );
    let disk = Disk::read(&images.join(format!("obsbox-{board}.img")));

    // The table: firmware, boot-a, boot-b, then an extended partition
    // holding rootfs-a, rootfs-b and data, in that order on the disk.
    assert_eq!(disk.id, "6f627362");
    let numbers: Vec<u32> = disk.partitions.keys().copied().collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7]);
    let kinds: Vec<&str> = disk.partitions.values().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["c", "c", "c", "f", "83", "83", "83"]);
    let bootable: Vec<u32> = disk
        .partitions
        .values()
        .filter(|p| p.bootable)
        .map(|p| p.number)
        .collect();
    assert_eq!(bootable, [1], "only the firmware partition is bootable");
    for (number, mib) in [(1, 32), (2, 128), (3, 128), (5, 1536), (6, 1536), (7, 256)] {
        assert_eq!(
            disk.partition(number).bytes(),
            mib * MIB,
            "size of partition {number}"
        );
    }
    let starts: Vec<u64> = disk.partitions.values().map(|p| p.start).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "order: {starts:?}");
    let extended = disk.partition(4);
    for number in 5..=7 {
        let p = disk.partition(number);
        assert!(p.start > extended.start && p.start + p.size <= extended.start + extended.size);
        assert_eq!(
            p.offset() % (4 * MIB),
            0,
            "partition {number} 4 MiB aligned"
        );
    }
    let data = disk.partition(7);
    assert_eq!(
        data.start + data.size,
        extended.start + extended.size,
        "data ends the extended partition, so growing both reaches the disk's end"
    );

    // autoboot.txt, alone on the firmware partition, names the boot
    // partitions firmware.json names.
    assert_eq!(disk.fat_files(1), BTreeSet::from(["autoboot.txt".into()]));
    let (boot_a, boot_b) = autoboot_partitions(&disk.fat_file(1, "autoboot.txt"));
    let firmware: Value = serde_json::from_str(&read(&repo(&format!(
        "image/rpi/{board}/overlay/etc/obsbox/firmware.json"
    ))))
    .unwrap();
    assert_eq!(firmware["board"], board);
    assert_eq!(firmware["version"], "@VERSION@", "stamped at build time");
    let flow = &firmware["boot_flow"];
    assert_eq!(flow["kind"], "tryboot");
    assert_eq!(flow["autoboot"], "/boot/firmware/autoboot.txt");
    assert_eq!(flow["partitions"]["a"], boot_a);
    assert_eq!(flow["partitions"]["b"], boot_b);

    let config = read(&repo(&format!("image/rpi/{board}/config.txt")));
    let mut rootfs_partitions = Vec::new();
    for (slot, boot) in [("a", boot_a), ("b", boot_b)] {
        assert_eq!(disk.partition(boot).kind, "c", "boot-{slot} is FAT");
        assert!(boot <= 4, "boot-{slot} is primary");

        // Each boot partition holds the board's boot files, config.txt and
        // its own cmdline.txt, and whatever config.txt loads is there.
        let files = disk.fat_files(boot);
        let mut expected: BTreeSet<String> = boot_inputs(board)
            .iter()
            .map(|f| f.rsplit('/').next().unwrap().to_string())
            .collect();
        expected.extend(["config.txt".into(), "cmdline.txt".into()]);
        assert_eq!(files, expected, "files of boot-{slot}");
        assert_eq!(disk.fat_file(boot, "config.txt"), config);
        for line in config.lines() {
            if let Some((key, value)) = line.split_once('=') {
                if ["kernel", "start_file", "fixup_file"].contains(&key) {
                    assert!(files.contains(value), "config.txt loads {value}");
                }
            }
        }

        // cmdline.txt: one line naming this slot and its rootfs by PARTUUID,
        // with the serial port as the last console (so /dev/console).
        let cmdline = disk.fat_file(boot, "cmdline.txt");
        assert_eq!(cmdline.lines().count(), 1, "cmdline.txt is one line");
        let args: Vec<&str> = cmdline.split_whitespace().collect();
        assert!(args.contains(&format!("obsbox.slot={slot}").as_str()));
        let root = args
            .iter()
            .find_map(|a| a.strip_prefix("root=PARTUUID="))
            .expect("root=PARTUUID=");
        let (id, number) = root.split_once('-').unwrap();
        assert_eq!(id, disk.id, "cmdline.txt of slot {slot} names this disk");
        let number: u32 = number.parse().unwrap();
        assert_eq!(disk.partition(number).kind, "83", "rootfs-{slot} is Linux");
        let console = args
            .iter()
            .rev()
            .find_map(|a| a.strip_prefix("console="))
            .unwrap();
        assert_eq!(console.split(',').next(), Some(serial_console));
        rootfs_partitions.push(number);

        let by_partuuid = |n: u32| format!("/dev/disk/by-partuuid/{}-{n:02}", disk.id);
        assert_eq!(firmware["slots"][slot]["rootfs"], by_partuuid(number));
        assert_eq!(firmware["slots"][slot]["boot"], by_partuuid(boot));

        // Both slots start out with the same rootfs image.
        let input = std::fs::read(&rootfs).unwrap();
        assert!(disk.bytes(number, input.len() as u64) == input);
    }
    assert_ne!(rootfs_partitions[0], rootfs_partitions[1]);
    assert!(!rootfs_partitions.contains(&7));
    assert_eq!(disk.ext4_label(7), "data");
}

#[test]
fn rpi4_image_layout() {
    if genimage_missing() {
        return;
    }
    check_rpi_image("rpi4", "ttyS0");
}

#[test]
fn rpi5_image_layout() {
    if genimage_missing() {
        return;
    }
    check_rpi_image("rpi5", "ttyAMA10");
}

/// A package's `.mk` variables (`NAME = value` lines), and the value of
/// `<PKG>_SOURCE` once its references are expanded for one architecture.
fn package_source(mk: &str, upper: &str, aarch64: bool) -> Option<String> {
    let vars: BTreeMap<&str, &str> = mk
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let arch_choice = "$(if $(BR2_aarch64),arm64,amd64)";
    let mut value = vars.get(format!("{upper}_SOURCE").as_str())?.to_string();
    // Expand until no reference is left; the tree uses plain references
    // and the one architecture choice.
    while let Some(start) = value.find("$(") {
        let end = value[start..].find(')').unwrap() + start;
        let name = &value[start + 2..end];
        let replacement = match vars.get(name) {
            Some(&v) if v == arch_choice => if aarch64 { "arm64" } else { "amd64" }.to_string(),
            Some(v) => v.to_string(),
            None => panic!("{upper}_SOURCE refers to unknown {name}"),
        };
        value.replace_range(start..=end, &replacement);
    }
    Some(value)
}

/// Release archives whose hash could not be found published anywhere this
/// project could read; buildroot refuses to download them until their
/// line is added (see README, "Images and buildroot").
const MISSING_HASHES: &[&str] = &["loki-linux-arm64.zip"];

/// The x86_64 firmware.json points obsbox at the grubenv GRUB reads: the
/// ESP is mounted on /boot/efi and GRUB's embedded config sets its prefix.
#[test]
fn x86_64_firmware_matches_grub() {
    let firmware: Value = serde_json::from_str(&read(&repo(
        "buildroot/board/x86_64/overlay/etc/obsbox/firmware.json",
    )))
    .unwrap();
    assert_eq!(firmware["board"], "x86_64");
    assert_eq!(firmware["version"], "@VERSION@", "stamped at build time");
    for slot in ["a", "b"] {
        assert_eq!(
            firmware["slots"][slot]["rootfs"],
            format!("/dev/disk/by-partlabel/rootfs-{slot}")
        );
    }
    let embedded = read(&repo("buildroot/board/x86_64/grub-embedded.cfg"));
    let prefix = embedded
        .lines()
        .find_map(|l| l.strip_prefix("set prefix=($root)"))
        .expect("the embedded config sets the prefix on the ESP");
    assert_eq!(firmware["boot_flow"]["kind"], "grub");
    assert_eq!(
        firmware["boot_flow"]["grubenv"],
        format!("/boot/efi{prefix}/grubenv")
    );
}

#[test]
fn buildroot_tree_is_consistent() {
    let tree = repo("buildroot");
    assert!(read(&tree.join("external.desc")).contains("name: OBSBOX\n"));
    assert!(read(&tree.join("external.mk")).contains("$(BR2_EXTERNAL_OBSBOX_PATH)/package/*/*.mk"));

    let sourced: BTreeSet<String> = read(&tree.join("Config.in"))
        .lines()
        .filter_map(|l| l.strip_prefix("source \"$BR2_EXTERNAL_OBSBOX_PATH/package/"))
        .map(|l| {
            l.strip_suffix("/Config.in\"")
                .expect("sources a package's Config.in")
                .to_string()
        })
        .collect();
    let packages: BTreeSet<String> = std::fs::read_dir(tree.join("package"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(sourced, packages, "every package is sourced from Config.in");

    let mut missing_hashes = Vec::new();
    let mut symbols = BTreeSet::new();
    for name in &packages {
        let dir = tree.join("package").join(name);
        let upper = name.to_uppercase().replace('-', "_");
        let symbol = format!("BR2_PACKAGE_{upper}");
        assert!(
            read(&dir.join("Config.in")).starts_with(&format!("config {symbol}\n")),
            "{name}/Config.in defines {symbol}"
        );
        symbols.insert(symbol);
        let mk = read(&dir.join(format!("{name}.mk")));
        assert!(mk.contains(&format!("\n# {name}\n")), "{name}.mk header");
        assert!(mk.contains(&format!("{upper}_VERSION = ")));

        // A local source (obsbox itself) is not downloaded and has no hash.
        if mk.contains(&format!("{upper}_SITE_METHOD = local")) {
            assert!(!dir.join(format!("{name}.hash")).exists());
            continue;
        }
        let sources: BTreeSet<String> = [true, false]
            .iter()
            .map(|&aarch64| package_source(&mk, &upper, aarch64).expect("_SOURCE"))
            .collect();
        let hashed: BTreeSet<String> = read(&dir.join(format!("{name}.hash")))
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let fields: Vec<&str> = l.split("  ").collect();
                assert_eq!(fields.len(), 3, "{name}.hash: {l}");
                assert_eq!(fields[0], "sha256");
                assert!(
                    fields[1].len() == 64 && fields[1].chars().all(|c| c.is_ascii_hexdigit()),
                    "{name}.hash: {l}"
                );
                fields[2].to_string()
            })
            .collect();
        assert!(
            hashed.is_subset(&sources),
            "{name}.hash names archives the package does not download: {:?}",
            hashed.difference(&sources).collect::<Vec<_>>()
        );
        missing_hashes.extend(sources.difference(&hashed).cloned());
    }
    assert_eq!(missing_hashes, MISSING_HASHES);

    let defconfigs = ["obsbox_rpi4_64", "obsbox_rpi5_64", "obsbox_x86_64"];
    for defconfig in defconfigs {
        let text = read(&tree.join(format!("configs/{defconfig}_defconfig")));
        assert!(text.contains("\nBR2_DOWNLOAD_FORCE_CHECK_HASHES=y\n"));
        // Every file of this tree or of image/ the defconfig names exists.
        for word in text.split(['"', ' ', '\n']) {
            if let Some(path) = word.strip_prefix("$(BR2_EXTERNAL_OBSBOX_PATH)/") {
                assert!(tree.join(path).exists(), "{defconfig} names {path}");
            }
        }
        // The appliance needs every child this tree packages.
        for symbol in &symbols {
            assert!(
                text.contains(&format!("\n{symbol}=y\n")),
                "{defconfig} enables {symbol}"
            );
        }
        // A Pi defconfig passes its board to its board scripts; the layout
        // and rootfs overlay (with firmware.json) must exist.
        if let Some(line) = text
            .lines()
            .find_map(|l| l.strip_prefix("BR2_ROOTFS_POST_SCRIPT_ARGS="))
        {
            let board = line.trim_matches('"');
            assert!(repo(&format!("image/rpi/genimage-{board}.cfg")).is_file());
            assert!(repo(&format!(
                "image/rpi/{board}/overlay/etc/obsbox/firmware.json"
            ))
            .is_file());
            assert!(text.contains(&format!("image/rpi/{board}/overlay\"")));
        }
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(tree.join("configs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = defconfigs
        .iter()
        .map(|d| format!("{d}_defconfig"))
        .collect();
    assert_eq!(on_disk, expected);
}

/// Every image build stamps the version into the board's firmware.json
/// from one place: Cargo.toml's package version, or the version a build is
/// given. The checked-in templates carry no version of their own.
#[test]
fn the_image_builds_stamp_the_version_from_cargo_toml() {
    let stamp = repo("image/stamp-firmware");
    let stamp = stamp.to_str().unwrap();
    for (board, template) in [
        ("x86_64", "buildroot/board/x86_64/overlay"),
        ("rpi4", "image/rpi/rpi4/overlay"),
        ("rpi5", "image/rpi/rpi5/overlay"),
    ] {
        let template = repo(&format!("{template}/etc/obsbox/firmware.json"));
        let rootfs = |version: Option<&str>| -> (String, Value) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("etc/obsbox")).unwrap();
            let file = dir.path().join("etc/obsbox/firmware.json");
            std::fs::copy(&template, &file).unwrap();
            let root = dir.path().to_str().unwrap();
            let printed = run(
                stamp,
                &[&[root, board][..], version.as_slice()].concat(),
                &[],
            );
            let written: Value = serde_json::from_str(&read(&file)).unwrap();
            (printed, written)
        };
        let (printed, written) = rootfs(None);
        assert_eq!(printed.trim(), env!("CARGO_PKG_VERSION"), "{board}");
        assert_eq!(written["version"], env!("CARGO_PKG_VERSION"), "{board}");
        assert_eq!(written["board"], board);
        let (printed, written) = rootfs(Some("2.10.3"));
        assert_eq!(printed.trim(), "2.10.3");
        assert_eq!(written["version"], "2.10.3");
        // Everything else is the template's.
        let mut expected: Value = serde_json::from_str(&read(&template)).unwrap();
        expected["version"] = "2.10.3".into();
        assert_eq!(written, expected, "{board}");
    }

    // A wrong board, a version that is not dotted numbers, or a file
    // already stamped is refused.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/obsbox")).unwrap();
    std::fs::copy(
        repo("image/rpi/rpi4/overlay/etc/obsbox/firmware.json"),
        dir.path().join("etc/obsbox/firmware.json"),
    )
    .unwrap();
    let root = dir.path().to_str().unwrap();
    for (args, error) in [
        (&[root, "rpi5"][..], "is not for board rpi5"),
        (&[root, "rpi4", "1.x"][..], "must be dotted numbers"),
    ] {
        let out = Command::new(stamp).args(args).output().unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(error),
            "{out:?}"
        );
    }
    run(stamp, &[root, "rpi4"], &[]);
    let again = Command::new(stamp).args([root, "rpi4"]).output().unwrap();
    assert!(!again.status.success(), "{again:?}");

    // Each build takes that step: buildroot's post-build scripts and
    // scripts/build-image.
    for (script, call) in [
        (
            "buildroot/board/rpi/post-build.sh",
            "image/stamp-firmware\" \"$1\" \"$2\"",
        ),
        (
            "buildroot/board/x86_64/post-build.sh",
            "/../stamp-firmware\" \"${TARGET_DIR}\" x86_64",
        ),
        (
            "scripts/build-image",
            "/image/stamp-firmware\" \"$root\" x86_64",
        ),
    ] {
        assert!(read(&repo(script)).contains(call), "{script} runs {call}");
    }
}
