//! Each boot flow against boot files as its boot loader leaves them, read
//! back with the boot loader's own tools where this machine has them.

use super::*;
use std::process::Command;

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.exists());
    if path.is_none() {
        // CI installs every tool these tests call: never skip there.
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed in CI (scripts/install-deps test)"
        );
        eprintln!(
            "SKIPPED in part: {name} is not installed (scripts/install-deps test installs it)"
        );
    }
    path
}

fn grub(dir: &Path) -> Grub {
    let grubenv = dir.join("grubenv");
    match tool("grub-editenv") {
        Some(editenv) => {
            let made = Command::new(editenv)
                .arg(&grubenv)
                .arg("create")
                .status()
                .unwrap();
            assert!(made.success());
            let set = Command::new("grub-editenv")
                .arg(&grubenv)
                .args(["set", "saved_entry=1"])
                .status()
                .unwrap();
            assert!(set.success());
        }
        None => std::fs::write(
            &grubenv,
            format!("{GRUBENV_HEADER}saved_entry=1\n{}", "#".repeat(998)),
        )
        .unwrap(),
    }
    Grub { grubenv }
}

/// The variables as GRUB's own tool lists them (or as obsbox reads them).
fn grub_vars(flow: &Grub) -> Vec<String> {
    if tool("grub-editenv").is_none() {
        return flow
            .load()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
    }
    let out = Command::new("grub-editenv")
        .arg(&flow.grubenv)
        .arg("list")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn grub_tries_once_then_commits() {
    let dir = tempfile::tempdir().unwrap();
    let flow = grub(dir.path());
    assert_eq!(
        flow.committed().unwrap(),
        Slot::A,
        "a fresh environment boots A"
    );

    flow.arm_trial(Slot::B).unwrap();
    assert_eq!(grub_vars(&flow), ["obsbox_try=b", "saved_entry=1"]);
    assert_eq!(std::fs::metadata(&flow.grubenv).unwrap().len(), 1024);
    assert_eq!(
        flow.committed().unwrap(),
        Slot::A,
        "a trial does not commit"
    );

    flow.disarm().unwrap();
    assert_eq!(grub_vars(&flow), ["saved_entry=1"]);

    flow.arm_trial(Slot::B).unwrap();
    flow.commit(Slot::B).unwrap();
    assert_eq!(grub_vars(&flow), ["obsbox_default=b", "saved_entry=1"]);
    assert_eq!(flow.committed().unwrap(), Slot::B);
    assert_eq!(flow.reboot_argument(), None);
}

#[test]
fn a_garbled_grub_environment_is_an_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let grubenv = dir.path().join("grubenv");
    std::fs::write(&grubenv, "hello").unwrap();
    let flow = Grub {
        grubenv: grubenv.clone(),
    };
    assert!(flow
        .committed()
        .unwrap_err()
        .to_string()
        .contains("not a GRUB environment block"));
    assert!(flow.arm_trial(Slot::B).is_err());
    assert_eq!(std::fs::read(&grubenv).unwrap(), b"hello");
    let missing = Grub {
        grubenv: dir.path().join("none"),
    };
    assert!(missing
        .committed()
        .unwrap_err()
        .to_string()
        .contains("cannot read"));
}

fn tryboot(dir: &Path) -> Tryboot {
    let autoboot = dir.join("autoboot.txt");
    std::fs::write(&autoboot, "# written by the image\n[all]\ntryboot_a_b=1\nboot_partition=5\n[tryboot]\nboot_partition=5\n").unwrap();
    Tryboot {
        autoboot,
        partitions: [(Slot::A, 5), (Slot::B, 6)].into(),
        tryboot_flag: dir.join("tryboot"),
    }
}

#[test]
fn tryboot_points_the_tryboot_section_at_the_new_slot() {
    let dir = tempfile::tempdir().unwrap();
    let flow = tryboot(dir.path());
    assert_eq!(flow.committed().unwrap(), Slot::A);
    flow.arm_trial(Slot::B).unwrap();
    assert_eq!(
        std::fs::read_to_string(&flow.autoboot).unwrap(),
        "[all]\ntryboot_a_b=1\nboot_partition=5\n[tryboot]\nboot_partition=6\n"
    );
    assert_eq!(flow.committed().unwrap(), Slot::A);
    assert_eq!(flow.reboot_argument(), Some("0 tryboot"));
    flow.commit(Slot::B).unwrap();
    assert_eq!(flow.committed().unwrap(), Slot::B);
    assert_eq!(
        std::fs::read_to_string(&flow.autoboot).unwrap(),
        "[all]\ntryboot_a_b=1\nboot_partition=6\n[tryboot]\nboot_partition=6\n"
    );
    flow.arm_trial(Slot::A).unwrap();
    flow.disarm().unwrap();
    assert!(std::fs::read_to_string(&flow.autoboot)
        .unwrap()
        .ends_with("[tryboot]\nboot_partition=6\n"));
}

#[test]
fn tryboot_refuses_a_partition_that_is_no_slot() {
    let dir = tempfile::tempdir().unwrap();
    let flow = tryboot(dir.path());
    std::fs::write(&flow.autoboot, "[all]\nboot_partition=9\n").unwrap();
    assert!(flow
        .committed()
        .unwrap_err()
        .to_string()
        .contains("boot_partition=9 is no slot's partition"));
    std::fs::write(&flow.autoboot, "[tryboot]\nboot_partition=6\n").unwrap();
    assert!(flow
        .committed()
        .unwrap_err()
        .to_string()
        .contains("no boot_partition in [all]"));
}

/// The U-Boot environment fragment obsbox ships for boards, without its
/// comments (mkenvimage takes none).
fn shipped_uboot_env() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/image/uboot/obsbox.env"
    ))
    .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A U-Boot environment in a file, as `fw_printenv` reads it from flash:
/// the shipped fragment.
fn uboot(dir: &Path) -> Option<UBoot> {
    uboot_with(dir, &shipped_uboot_env())
}

fn uboot_with(dir: &Path, env: &str) -> Option<UBoot> {
    let (printenv, setenv, mkenvimage) = (
        tool("fw_printenv")?,
        tool("fw_setenv")?,
        tool("mkenvimage")?,
    );
    let text = dir.join("env.txt");
    std::fs::write(&text, env).unwrap();
    let env = dir.join("env.bin");
    let made = Command::new(mkenvimage)
        .args(["-s", "0x4000", "-o"])
        .arg(&env)
        .arg(&text)
        .status()
        .unwrap();
    assert!(made.success());
    let config = dir.join("fw_env.config");
    std::fs::write(&config, format!("{} 0x0 0x4000\n", env.display())).unwrap();
    Some(UBoot {
        config,
        printenv,
        setenv,
    })
}

#[test]
fn uboot_counts_boots_during_a_trial_only() {
    let dir = tempfile::tempdir().unwrap();
    let Some(flow) = uboot(dir.path()) else {
        return;
    };
    assert_eq!(flow.committed().unwrap(), Slot::A);
    flow.arm_trial(Slot::B).unwrap();
    let vars = flow.vars().unwrap();
    assert_eq!(vars["obsbox_slot"], "b");
    assert_eq!(vars["obsbox_fallback"], "a");
    assert_eq!(vars["upgrade_available"], "1");
    assert_eq!(vars["bootlimit"], "1", "other variables stay");
    assert_eq!(
        flow.committed().unwrap(),
        Slot::A,
        "on trial, the fallback is committed"
    );

    flow.commit(Slot::B).unwrap();
    let vars = flow.vars().unwrap();
    assert_eq!(
        (
            vars["obsbox_slot"].as_str(),
            vars["upgrade_available"].as_str()
        ),
        ("b", "0")
    );
    assert_eq!(flow.committed().unwrap(), Slot::B);

    flow.arm_trial(Slot::A).unwrap();
    flow.disarm().unwrap();
    let vars = flow.vars().unwrap();
    assert_eq!(
        (
            vars["obsbox_slot"].as_str(),
            vars["upgrade_available"].as_str()
        ),
        ("b", "0")
    );
}

#[test]
fn a_failing_uboot_tool_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut flow) = uboot(dir.path()) else {
        return;
    };
    flow.config = dir.path().join("missing.config");
    let error = flow.committed().unwrap_err().to_string();
    assert!(error.contains("fw_printenv failed"), "{error}");
}

#[test]
fn uboot_refuses_a_trial_without_boot_counting() {
    let dir = tempfile::tempdir().unwrap();
    let Some(flow) = uboot_with(dir.path(), "obsbox_slot=a\nbootcmd=run obsbox_boot_slot\n") else {
        return;
    };
    let refused = flow.arm_trial(Slot::B).unwrap_err().to_string();
    for name in ["bootlimit", "bootcount", "altbootcmd"] {
        assert!(refused.contains(name), "{refused}");
    }
    assert!(flow.check_trial().is_err());
    assert_eq!(
        flow.vars().unwrap()["obsbox_slot"],
        "a",
        "nothing was armed"
    );
}

#[test]
fn the_boot_counting_check_reads_each_variable() {
    let vars = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let whole = [
        ("bootlimit", "1"),
        ("bootcount", "0"),
        (
            "altbootcmd",
            "setenv obsbox_slot ${obsbox_fallback}; run bootcmd",
        ),
    ];
    assert!(uboot_can_try(&vars(&whole)).is_ok());
    for (i, (name, _)) in whole.iter().enumerate() {
        let mut less = whole.to_vec();
        less.remove(i);
        let refused = uboot_can_try(&vars(&less)).unwrap_err().to_string();
        assert!(refused.contains(name), "{refused}");
    }
    let mut zero = whole.to_vec();
    zero[0].1 = "0";
    assert!(uboot_can_try(&vars(&zero)).is_err());
    let mut elsewhere = whole.to_vec();
    elsewhere[2].1 = "run bootcmd";
    assert!(
        uboot_can_try(&vars(&elsewhere)).is_err(),
        "altbootcmd must go back"
    );
}

#[test]
fn a_damaged_grubenv_is_rebuilt_with_the_committed_slot() {
    let dir = tempfile::tempdir().unwrap();
    let flow = grub(dir.path());
    std::fs::write(&flow.grubenv, "garbage").unwrap();
    let damage = flow.committed().unwrap_err();
    assert!(damage.is_damage(), "{damage}");
    flow.rebuild(Slot::B).unwrap().unwrap();
    assert_eq!(flow.committed().unwrap(), Slot::B);
    assert_eq!(grub_vars(&flow), ["obsbox_default=b"]);
    std::fs::remove_file(&flow.grubenv).unwrap();
    assert!(
        flow.committed().unwrap_err().is_damage(),
        "a missing file too"
    );
}

/// A power cut during a switch: the new file whole beside the old one is
/// the newer state; a partial one is dropped.
#[test]
fn an_interrupted_switch_is_finished_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let flow = grub(dir.path());
    flow.arm_trial(Slot::B).unwrap();
    assert!(!pending(&flow.grubenv).exists(), "switched");
    let armed = std::fs::read(&flow.grubenv).unwrap();
    flow.disarm().unwrap();
    // Cut after the new file was written, before the rename.
    std::fs::write(pending(&flow.grubenv), &armed).unwrap();
    assert_eq!(
        grub_vars_after_read(&flow),
        ["obsbox_try=b", "saved_entry=1"]
    );
    // Cut while the new file was being written.
    std::fs::write(pending(&flow.grubenv), &armed[..300]).unwrap();
    flow.disarm().unwrap();
    assert!(!pending(&flow.grubenv).exists());
    assert_eq!(grub_vars(&flow), ["saved_entry=1"]);

    let pi = tryboot(dir.path());
    pi.arm_trial(Slot::B).unwrap();
    std::fs::remove_file(&pi.autoboot).unwrap();
    std::fs::write(
        pending(&pi.autoboot),
        "[all]\ntryboot_a_b=1\nboot_partition=6\n[tryboot]\nboot_partition=6\n",
    )
    .unwrap();
    assert_eq!(pi.committed().unwrap(), Slot::B, "the switch is finished");
    assert!(pi.autoboot.exists() && !pending(&pi.autoboot).exists());
}

fn grub_vars_after_read(flow: &Grub) -> Vec<String> {
    flow.committed().unwrap();
    let mut vars = grub_vars(flow);
    vars.sort();
    vars
}

#[test]
fn the_pi_firmware_says_whether_this_boot_was_a_tryboot() {
    let dir = tempfile::tempdir().unwrap();
    let mut flow = tryboot(dir.path());
    assert_eq!(flow.trial_boot(), None, "no device tree: cannot say");
    std::fs::write(&flow.tryboot_flag, [0, 0, 0, 1]).unwrap();
    assert_eq!(flow.trial_boot(), Some(true));
    std::fs::write(&flow.tryboot_flag, [0, 0, 0, 0]).unwrap();
    assert_eq!(flow.trial_boot(), Some(false));
    flow.tryboot_flag = dir.path().join("none");
    assert_eq!(flow.trial_boot(), None);
}
