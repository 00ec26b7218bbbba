"""The update install benchmark: obsbox installing a signed bundle into a
slot, beside a plain `dd` of the same image to the same target.

The image is a 1 GiB ext4 file system holding /usr/bin (about half full, as
a root file system is) and the firmware stamp (`/etc/obsbox/firmware.json`)
that `bundle create` checks; the bundle is made from it with `obsbox bundle
create`. The target is a file on the same disk, written over in place by
both. Before each run the page cache is dropped (root), so reads come from
the disk. obsbox's install does more than dd: it checks a SHA-256 per 4 KiB
block before writing, decompresses, and reads the whole slot back from the
disk afterwards; so dd followed by a read-back (`sha256sum`) is printed too.
Peak RSS is the install process's maximum resident set (wait4's ru_maxrss).

Run from bench_obsbox.py: with the rest by `scripts/bench`, alone by
`scripts/bench --only install`.
"""
import json, os, statistics, subprocess, tempfile, time

IMAGE_BYTES = 1 << 30


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass  # not root: reads may come from the cache


def timed(args):
    """Runs `args`; (wall seconds, peak RSS in KB, what it printed)."""
    start = time.monotonic()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args[0]} failed: {child.stderr.read().decode()}")
    return wall, usage.ru_maxrss, out


def run(samples):
    work = tempfile.mkdtemp(prefix="obsbox-install-", dir=os.path.join(os.getcwd(), "target", "bench"))
    image, slot_a, slot_b = (os.path.join(work, n) for n in ("rootfs.img", "rootfs-a", "rootfs-b"))
    with open(image, "wb") as f:
        f.truncate(IMAGE_BYTES)
    # The root file system: /usr/bin, and the firmware stamp `bundle create`
    # checks against the bundle's version and board.
    tree = os.path.join(work, "tree")
    os.makedirs(os.path.join(tree, "etc", "obsbox"))
    sh("cp", "-a", "/usr/bin", os.path.join(tree, "bin"))
    json.dump({"board": "x86_64", "version": "1.1.0"},
              open(os.path.join(tree, "etc", "obsbox", "firmware.json"), "w"))
    sh("mkfs.ext4", "-q", "-F", "-d", tree, image)
    sh("rm", "-rf", tree)
    for slot in (slot_a, slot_b):
        sh("dd", "if=/dev/zero", f"of={slot}", "bs=4M", f"count={IMAGE_BYTES >> 22}", "conv=fsync")
    key, pub, bundle = (os.path.join(work, n) for n in ("key", "key.pub", "update.obb"))
    sh("obsbox", "bundle", "keygen", "--secret", key, "--public", pub)
    started = time.monotonic()
    sh("obsbox", "bundle", "create", "--key", key, "--version", "1.1.0", "--compatible", "x86_64",
       "--rootfs", image, "--output", bundle)
    create_s = time.monotonic() - started
    for name, text in (("cmdline", "obsbox.slot=a\n"), ("boot_id", "bench\n")):
        open(os.path.join(work, name), "w").write(text)
    grubenv = "# GRUB Environment Block\n"
    open(os.path.join(work, "grubenv"), "w").write(grubenv + "#" * (1024 - len(grubenv)))
    firmware = os.path.join(work, "firmware.json")
    json.dump({
        "board": "x86_64", "version": "1.0.0", "public_key": pub,
        "slots": {"a": {"rootfs": slot_a}, "b": {"rootfs": slot_b}},
        "boot_flow": {"kind": "grub", "grubenv": os.path.join(work, "grubenv")},
        "cmdline": os.path.join(work, "cmdline"), "boot_id": os.path.join(work, "boot_id"),
    }, open(firmware, "w"))

    results = {"dd": [], "dd_read_back": [], "obsbox": [], "obsbox_write": [], "obsbox_rss_kb": []}
    for _ in range(samples):
        drop_caches()
        wall, _, _ = timed(["dd", f"if={image}", f"of={slot_b}", "bs=4M", "conv=notrunc,fsync"])
        results["dd"].append(wall)
        drop_caches()
        read_back, _, _ = timed(["sha256sum", slot_b])
        results["dd_read_back"].append(wall + read_back)
        drop_caches()
        wall, rss, out = timed(["obsbox", "update", "install", bundle, "--firmware", firmware,
                                "--data-dir", os.path.join(work, "data")])
        # "... (written in 3.4 s, read back in 3.9 s)"
        written = float(out.split("written in ")[1].split(" s")[0])
        results["obsbox"].append(wall)
        results["obsbox_write"].append(written)
        results["obsbox_rss_kb"].append(rss)
    mib = IMAGE_BYTES / (1 << 20)
    summary = {
        "image_mib": mib,
        "bundle_mib": round(os.path.getsize(bundle) / (1 << 20), 1),
        "create_s": round(create_s, 1),
        "samples": samples,
        "dd_mib_s": round(mib / statistics.median(results["dd"]), 1),
        "dd_read_back_mib_s": round(mib / statistics.median(results["dd_read_back"]), 1),
        "obsbox_mib_s": round(mib / statistics.median(results["obsbox"]), 1),
        "obsbox_write_mib_s": round(mib / statistics.median(results["obsbox_write"]), 1),
        "obsbox_peak_rss_kb": max(results["obsbox_rss_kb"]),
    }
    summary["obsbox_write_vs_dd"] = round(summary["obsbox_write_mib_s"] / summary["dd_mib_s"], 2)
    summary["obsbox_vs_dd_read_back"] = round(summary["obsbox_mib_s"] / summary["dd_read_back_mib_s"], 2)
    print("\n== update install: a 1 GiB ext4 image (/usr/bin) into a slot file on the same disk, page cache dropped")
    print(f"bundle: {summary['bundle_mib']} MiB, made in {summary['create_s']} s")
    print(f"dd (write, fsync):              {summary['dd_mib_s']} MiB/s")
    print(f"dd + sha256sum read-back:       {summary['dd_read_back_mib_s']} MiB/s")
    print(f"obsbox install, write phase:    {summary['obsbox_write_mib_s']} MiB/s "
          f"({summary['obsbox_write_vs_dd']} x dd; every block checked before it is written, fsync)")
    print(f"obsbox install, whole:          {summary['obsbox_mib_s']} MiB/s "
          f"({summary['obsbox_vs_dd_read_back']} x dd + read-back; the slot read back from the disk and hashed)")
    print(f"obsbox peak RSS during install: {summary['obsbox_peak_rss_kb']} KB (goal <= 32768)")
    sh("rm", "-rf", work)
    return summary
