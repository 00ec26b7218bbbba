//! Restores: listing a job's snapshots, browsing a snapshot's files,
//! restoring chosen files onto the box, downloading them as a tar, through
//! the API and the command line; with the PBS client stand-in and real restic.

mod common;

use common::pbs::{self, create_job, finished_run, fixture, job, restic_repository};
use common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

fn backed_up(obsbox: &Obsbox, name: &str) -> Value {
    obsbox.send("POST", &format!("/api/backups/jobs/{name}/run"), "");
    let run = finished_run(obsbox, name, "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    run
}

fn names(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {entries}"))
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn files(obsbox: &Obsbox, job: &str, snapshot: &str, path: &str) -> Value {
    let (status, body) = obsbox.send(
        "GET",
        &format!(
            "/api/backups/jobs/{job}/files?snapshot={}&path={}",
            encode(snapshot),
            encode(path)
        ),
        "",
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// Starts a restore and waits for its end.
fn restore(obsbox: &Obsbox, job: &str, request: Value) -> Value {
    let (status, started) = obsbox.send(
        "POST",
        &format!("/api/backups/jobs/{job}/restore"),
        &request.to_string(),
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_u64().unwrap();
    wait_for("the restore to end", Duration::from_secs(60), || {
        let s = obsbox.get(&format!("/api/backups/restores/{id}"));
        (s["state"] != "running").then_some(s)
    })
}

/// The job's restore `done` is a run of kind `restore` in its history, with
/// its page and the client's log; the job's last backup and last success
/// (its RPO) are still `backup`'s.
fn is_a_restore_run(obsbox: &Obsbox, job: &str, done: &Value, backup: &Value) -> Value {
    let history = obsbox.get(&format!("/api/backups/history?job={job}"));
    let run = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == done["id"])
        .unwrap_or_else(|| panic!("no run {} in {history}", done["id"]))
        .clone();
    assert_eq!(run["kind"], "restore", "{run}");
    assert_eq!(run["result"], done["state"], "{run}");
    assert_eq!(run["actor"], "admin", "{run}");
    assert_eq!(run["snapshot"], done["snapshot"], "{run}");
    assert_eq!(run["target"], done["target"], "{run}");
    assert_eq!(run["paths"], done["paths"], "{run}");
    assert_eq!(run["files"], done["files"], "{run}");
    assert_eq!(run["bytes"], done["bytes"], "{run}");
    assert!(
        run["ended_at"].as_i64() >= run["started_at"].as_i64(),
        "{run}"
    );
    let page = obsbox.get(&format!("/api/backups/runs/{}", done["id"]));
    assert_eq!(page["kind"], "restore", "{page}");
    assert_eq!(page["log"], run["log"], "{page}");
    let status = obsbox.get("/api/backups");
    let status = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == job)
        .unwrap();
    assert_eq!(status["last_backup"]["id"], backup["id"], "{status}");
    assert_eq!(status["last_success"]["id"], backup["id"], "{status}");
    run
}

/// The files of a downloaded tar: (path, contents); checks that the
/// download is a `restore` run with the target `download` and the tar's size.
fn tar_files(obsbox: &Obsbox, job: &str, snapshot: &str, path: &str) -> Vec<(String, Vec<u8>)> {
    let response = obsbox
        .request(
            "GET",
            &format!(
                "/api/backups/jobs/{job}/download?snapshot={}&path={}",
                encode(snapshot),
                encode(path)
            ),
        )
        .call()
        .unwrap();
    assert_eq!(response.content_type(), "application/x-tar");
    let mut body = Vec::new();
    response.into_reader().read_to_end(&mut body).unwrap();
    let run = wait_for("the download's run to end", Duration::from_secs(30), || {
        let history = obsbox.get(&format!("/api/backups/history?job={job}"));
        let newest = history[0].clone();
        (newest["target"] == "download" && newest["result"] != "running").then_some(newest)
    });
    assert_eq!(run["kind"], "restore", "{run}");
    assert_eq!(run["result"], "ok", "{run}");
    assert_eq!(run["actor"], "admin", "{run}");
    assert_eq!(run["paths"], json!([path]), "{run}");
    assert_eq!(run["bytes"].as_u64(), Some(body.len() as u64), "{run}");
    let mut archive = tar::Archive::new(&body[..]);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let path = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.push((path.trim_start_matches("./").to_string(), data));
        }
    }
    out.sort();
    out
}

/// What is left of a restore target: relative paths of its files.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn refused(obsbox: &Obsbox, job: &str, request: Value) -> String {
    let (status, body) = obsbox.send(
        "POST",
        &format!("/api/backups/jobs/{job}/restore"),
        &request.to_string(),
    );
    assert_eq!(status, 422, "{request}: {body}");
    body["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn pbs_snapshots_are_listed_browsed_restored_and_downloaded() {
    let fx = fixture(3);
    let mut obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    let run = backed_up(&obsbox, "photos");

    let list = obsbox.get("/api/backups/jobs/photos/snapshots");
    let snap = &list[0];
    assert_eq!(snap["id"], run["snapshot"], "{list}");
    assert_eq!(snap["contents"], json!(["photos"]), "{list}");
    assert!(snap["size"].as_u64().unwrap() > 0, "{list}");
    assert_eq!(snap["protected"], false);
    let id = snap["id"].as_str().unwrap();

    assert_eq!(names(&files(&obsbox, "photos", id, "/")), ["/photos"]);
    assert_eq!(
        names(&files(&obsbox, "photos", id, "/photos")),
        ["/photos/2026", "/photos/index.txt"]
    );
    let summer = files(&obsbox, "photos", id, "/photos/2026/summer");
    assert_eq!(summer[1]["name"], "img001.raw");
    assert_eq!(
        summer[1]["size"].as_u64().unwrap(),
        std::fs::metadata(fx.source.join("2026/summer/img001.raw"))
            .unwrap()
            .len()
    );
    let (status, body) = obsbox.send(
        "GET",
        &format!(
            "/api/backups/jobs/photos/files?snapshot={}&path=/photos/nope",
            encode(id)
        ),
        "",
    );
    assert_eq!(status, 404, "{body}");

    // One file and one small file elsewhere: only those come back.
    let target = fx.root.parent().unwrap().join("restored");
    let done = restore(
        &obsbox,
        "photos",
        json!({"snapshot": id, "target": target,
               "paths": ["/photos/2026/summer/img001.raw", "/photos/index.txt"]}),
    );
    assert_eq!(done["state"], "ok", "{done}");
    assert_eq!(done["files"], 2, "{done}");
    assert_eq!(
        tree(&target),
        ["photos/2026/summer/img001.raw", "photos/index.txt"]
    );
    assert_eq!(
        std::fs::read(target.join("photos/2026/summer/img001.raw")).unwrap(),
        std::fs::read(fx.source.join("2026/summer/img001.raw")).unwrap()
    );
    // Everything, into another place.
    let all = fx.root.parent().unwrap().join("all");
    let done = restore(
        &obsbox,
        "photos",
        json!({"snapshot": id, "target": all, "paths": ["/"]}),
    );
    assert_eq!(done["state"], "ok", "{done}");
    assert_eq!(done["files"], 4, "{done}");
    assert!(done["bytes"].as_u64().unwrap() > 0, "{done}");
    is_a_restore_run(&obsbox, "photos", &done, &run);
    assert_eq!(obsbox.get("/api/backups/restores")[0]["id"], done["id"]);
    // The restores are still listed after a restart.
    obsbox.restart();
    assert_eq!(obsbox.get("/api/backups/restores")[0], done);
    assert_eq!(
        obsbox.get(&format!("/api/backups/restores/{}", done["id"])),
        done
    );

    // Never over the system, obsbox's data, anything there, or by `..`.
    for (target, why) in [
        ("/etc/restored".to_string(), "/etc"),
        (
            format!("{}/x", obsbox.data.display()),
            "belongs to the system",
        ),
        (target.display().to_string(), "not empty"),
        (format!("{}/../../etc", target.display()), "'..'"),
        ("relative".into(), "absolute"),
    ] {
        let error = refused(
            &obsbox,
            "photos",
            json!({"snapshot": id, "target": target, "paths": ["/"]}),
        );
        assert!(error.contains(why), "{target}: {error}");
    }
    let error = refused(
        &obsbox,
        "photos",
        json!({"snapshot": id, "target": "/tmp/fine-x", "paths": ["/photos/../../etc"]}),
    );
    assert!(error.contains("'..'"), "{error}");

    // A directory as a tar, streamed.
    let tar = tar_files(&obsbox, "photos", id, "/photos/2026");
    let paths: Vec<&str> = tar.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "photos/2026/summer/img000.raw",
            "photos/2026/summer/img001.raw",
            "photos/2026/summer/img002.raw"
        ]
    );
    assert_eq!(
        tar[2].1,
        std::fs::read(fx.source.join("2026/summer/img002.raw")).unwrap()
    );
    // A tar reader may stop at the archive's end marker, before the stream ends.
    wait_for(
        "the download's scratch copy to be removed",
        Duration::from_secs(10),
        || {
            (std::fs::read_dir(obsbox.data.join("backup-staging/photos"))
                .map(|d| d.count())
                .unwrap_or(0)
                == 0)
                .then_some(())
        },
    );
    assert!(obsbox
        .api_audit()
        .iter()
        .any(|a| a.contains("backup.restore")));
}

/// A restic repository made by restic itself, with `PASSWORD`.
#[test]
fn restic_snapshots_are_listed_browsed_restored_and_downloaded_by_api_and_cli() {
    let fx = fixture(2);
    let repo = restic_repository(&fx);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let mut j = job("photos", &fx.source);
    j["backend"] = json!("restic");
    j["repository"] = json!(repo.display().to_string());
    create_job(&obsbox, j);
    let run = backed_up(&obsbox, "photos");

    let list = obsbox.get("/api/backups/jobs/photos/snapshots");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with(run["snapshot"].as_str().unwrap()), "{list}");
    let source = fx.source.display().to_string();
    assert_eq!(list[0]["contents"], json!([source]));

    assert_eq!(
        names(&files(&obsbox, "photos", &id, &source)),
        [format!("{source}/2026"), format!("{source}/index.txt")]
    );
    let summer = format!("{source}/2026/summer");
    assert_eq!(
        names(&files(&obsbox, "photos", &id, &summer)),
        [
            format!("{summer}/img000.raw"),
            format!("{summer}/img001.raw")
        ]
    );

    let target = fx.root.parent().unwrap().join("restored");
    let done = restore(
        &obsbox,
        "photos",
        json!({"snapshot": id, "target": target, "paths": [format!("{summer}/img001.raw")]}),
    );
    assert_eq!(done["state"], "ok", "{done}");
    let inside = summer.trim_start_matches('/');
    assert_eq!(tree(&target), [format!("{inside}/img001.raw")]);
    let size = std::fs::metadata(fx.source.join("2026/summer/img001.raw"))
        .unwrap()
        .len();
    assert_eq!(
        (done["files"].as_u64(), done["bytes"].as_u64()),
        (Some(1), Some(size))
    );
    let restored = is_a_restore_run(&obsbox, "photos", &done, &run);
    // restic says what it restored on stdout: the run's log keeps it.
    assert!(
        restored["log"].as_str().unwrap().contains("restoring"),
        "{restored}"
    );
    // A restore that fails says why in restic's own words.
    let failed = restore(
        &obsbox,
        "photos",
        json!({"snapshot": "0123abcd", "target": fx.root.parent().unwrap().join("none"),
               "paths": ["/"]}),
    );
    assert_eq!(failed["state"], "failed", "{failed}");
    let run_failed = is_a_restore_run(&obsbox, "photos", &failed, &run);
    let reason = run_failed["reason"].as_str().unwrap();
    assert!(reason.contains("no matching ID"), "{run_failed}");
    // So does a download of a path the snapshot does not hold.
    let mut body = Vec::new();
    let response = obsbox
        .request(
            "GET",
            &format!(
                "/api/backups/jobs/photos/download?snapshot={id}&path={}",
                encode(&format!("{source}/nope"))
            ),
        )
        .call()
        .unwrap();
    response.into_reader().read_to_end(&mut body).unwrap();
    let gone = wait_for("the failed download's run", Duration::from_secs(30), || {
        let newest = obsbox.get("/api/backups/history?job=photos")[0].clone();
        (newest["target"] == "download" && newest["result"] != "running").then_some(newest)
    });
    assert_eq!(gone["result"], "failed", "{gone}");
    assert!(
        gone["reason"]
            .as_str()
            .unwrap()
            .contains("restic dump failed"),
        "{gone}"
    );

    let tar = tar_files(&obsbox, "photos", &id, &summer);
    let paths: Vec<&str> = tar.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("{inside}/img000.raw"),
            format!("{inside}/img001.raw")
        ]
    );
    assert_eq!(
        tar[0].1,
        std::fs::read(fx.source.join("2026/summer/img000.raw")).unwrap()
    );

    // The command line does the same from the data directory.
    let data = obsbox.data.clone();
    let (ok, out) = run_cli(&data, &["backup", "snapshots", "photos"]);
    assert!(ok && out.contains(&id), "{out}");
    let (ok, out) = run_cli(&data, &["backup", "ls", "photos", &id, &summer]);
    assert!(ok && out.contains("img001.raw"), "{out}");
    let cli_target = fx.root.parent().unwrap().join("cli");
    let (ok, out) = run_cli(
        &data,
        &[
            "backup",
            "restore",
            "photos",
            &id,
            &format!("{source}/index.txt"),
            "--target",
            cli_target.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("restored 1 files"), "{out}");
    assert_eq!(
        std::fs::read_to_string(
            cli_target.join(format!("{}/index.txt", source.trim_start_matches('/')))
        )
        .unwrap(),
        "my photos\n"
    );
    let (ok, out) = run_cli(
        &data,
        &[
            "backup", "restore", "photos", &id, "/", "--target", "/usr/x",
        ],
    );
    assert!(!ok && out.contains("/usr"), "{out}");
}

#[test]
fn job_options_reach_both_clients_and_bad_ones_are_refused() {
    let fx = fixture(2);
    let obsbox = pbs::start(&fx, &[], &[]);
    let mut j = job("photos", &fx.source);
    j["options"] = json!({"exclude": ["/2026/"], "one_file_system": false, "limit_kib": 500});
    create_job(&obsbox, j);
    let run = backed_up(&obsbox, "photos");
    let log = run["log"].as_str().unwrap_or_default();
    let id = run["snapshot"].as_str().unwrap();
    let top = names(&files(&obsbox, "photos", id, "/photos"));
    assert!(top.contains(&"/photos/index.txt".to_string()), "{top:?}");
    assert!(!top.contains(&"/photos/2026".to_string()), "{top:?} {log}");

    let repo = restic_repository(&fx);
    let mut j = job("pics", &fx.source);
    j["backend"] = json!("restic");
    j["repository"] = json!(repo.display().to_string());
    j["options"] = json!({"exclude": ["*.raw"], "limit_kib": 100000});
    create_job(&obsbox, j);
    let run = backed_up(&obsbox, "pics");
    let id = obsbox.get("/api/backups/jobs/pics/snapshots")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with(run["snapshot"].as_str().unwrap()));
    let summer = format!("{}/2026/summer", fx.source.display());
    assert_eq!(files(&obsbox, "pics", &id, &summer), json!([]));
    assert_eq!(
        names(&files(
            &obsbox,
            "pics",
            &id,
            &fx.source.display().to_string()
        )),
        [
            format!("{}/2026", fx.source.display()),
            format!("{}/index.txt", fx.source.display())
        ]
    );

    let mut bad = job("bad", &fx.source);
    bad["options"] = json!({"exclude": ["--delete"], "verify_schedule": "every full moon"});
    let (status, body) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": bad}).to_string(),
    );
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("options.exclude") && text.contains("options.verify_schedule"),
        "{text}"
    );
}

#[test]
fn hooks_run_unprivileged_around_a_backup_and_a_failing_pre_hook_fails_it() {
    let fx = fixture(1);
    let obsbox = pbs::start(&fx, &[], &[]);
    let mut j = job("photos", &fx.source);
    j["options"] = json!({
        "pre_hook": {"command": ["/bin/sh", "-c", "echo dumping $OBSBOX_BACKUP_JOB as $(id -u)"]},
        "post_hook": {"command": ["/bin/echo", "all done"], "timeout": "10s"},
    });
    create_job(&obsbox, j);
    let run = backed_up(&obsbox, "photos");
    let log = run["log"].as_str().unwrap();
    let dumped = log
        .lines()
        .find_map(|l| l.strip_prefix("dumping photos as "))
        .unwrap_or_else(|| panic!("{log}"));
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap();
    if root {
        assert_ne!(dumped, "0", "the hook ran as root");
    }
    let (pre, backup, post) = (
        log.find("dumping").unwrap(),
        log.find("Starting backup").unwrap(),
        log.find("all done").unwrap(),
    );
    assert!(pre < backup && backup < post, "{log}");

    for (hook, why) in [
        (
            json!({"command": ["/bin/sh", "-c", "echo no database; exit 3"]}),
            "pre-hook /bin/sh failed (exit code 3): no database",
        ),
        (
            json!({"command": ["/bin/sleep", "30"], "timeout": "1s"}),
            "did not finish within",
        ),
    ] {
        let mut j = job("photos", &fx.source);
        j["options"] = json!({"pre_hook": hook});
        let (status, body) = obsbox.send(
            "PUT",
            "/api/backups/jobs/photos",
            &json!({"job": j}).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        obsbox.send("POST", "/api/backups/jobs/photos/run", "");
        let last = finished_run(&obsbox, "photos", "backup", run["id"].as_i64().unwrap());
        let last = wait_for("this hook's run", Duration::from_secs(30), || {
            let runs = obsbox.get("/api/backups/history?job=photos");
            let newest = runs[0].clone();
            (newest["result"] != "running" && newest["id"].as_i64() >= last["id"].as_i64())
                .then_some(newest)
        });
        assert_eq!(last["result"], "failed", "{last}");
        let reason = last["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{reason}");
        assert!(
            !last["log"].as_str().unwrap().contains("Starting backup"),
            "{last}"
        );
    }
    let mut bad = job("bad", &fx.source);
    bad["options"] = json!({"pre_hook": {"command": ["pg_dump"], "timeout": "soon"}});
    let (status, body) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": bad}).to_string(),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("options.pre_hook"), "{body}");
}

/// Every file under `dir` with its bytes, by relative path.
fn file_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = tree(dir)
        .into_iter()
        .filter(|p| dir.join(p).is_file())
        .map(|p| {
            let bytes = std::fs::read(dir.join(&p)).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Restores `repo`'s newest snapshot into `target` with restic alone (as on
/// another machine) and answers where the box's settings database and
/// secrets landed in it.
fn restore_state(repo: &Path, target: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    restic(
        repo,
        &[
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    );
    let db = find(target, "obsbox.db");
    let secrets = db.parent().unwrap().parent().unwrap().join("secrets");
    (db, secrets)
}

/// Finds the one file named `name` below `dir`.
fn find(dir: &Path, name: &str) -> std::path::PathBuf {
    let found: Vec<String> = tree(dir)
        .into_iter()
        .filter(|p| p.ends_with(&format!("/{name}")) || p == name)
        .collect();
    assert_eq!(found.len(), 1, "{name} in {found:?}");
    dir.join(&found[0])
}

/// obsbox's own state backed up with the real restic, restored onto a fresh
/// data directory as web/docs/backups.md says: settings, secrets and history
/// are back; the backup's own password is not in it and is given again.
#[test]
fn the_boxs_own_state_restores_onto_a_fresh_data_directory() {
    let fx = fixture(1);
    let repo = restic_repository(&fx);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let mut state = pbs::restic_job("box", &fx, &repo);
    state["appliance_state"] = json!(true);
    state["schedule"] = json!("mon..fri 03:30");
    create_job(&obsbox, state);
    // Two runs: the copy a run takes holds that run as still under way.
    obsbox.send("POST", "/api/backups/jobs/box/run", "");
    let run = finished_run(&obsbox, "box", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    obsbox.send("POST", "/api/backups/jobs/box/run", "");
    let second = finished_run(&obsbox, "box", "backup", run["id"].as_i64().unwrap());
    assert_eq!(second["result"], "ok", "{second}");
    let secrets = obsbox.data.join("secrets");
    let kept: Vec<(String, Vec<u8>)> = file_tree(&secrets)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("backup/"))
        .collect();
    assert!(!kept.is_empty(), "the box keeps secrets of its own");

    // On another box: restic alone, with the password kept off the box.
    let restored = tempfile::tempdir().unwrap();
    let (db, restored_secrets) = restore_state(&repo, restored.path());
    assert_eq!(
        file_tree(&restored_secrets),
        kept,
        "the secrets, without the backup's own credentials"
    );

    let mut fresh = Obsbox::start_fresh(&[], &[]);
    let data = fresh.data.clone();
    fresh.restart_after(|| {
        for leftover in ["obsbox.db", "obsbox.db-wal", "obsbox.db-shm", "secrets"] {
            let _ = std::fs::remove_file(data.join(leftover));
            let _ = std::fs::remove_dir_all(data.join(leftover));
        }
        std::fs::copy(&db, data.join("obsbox.db")).unwrap();
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(&restored_secrets)
            .arg(data.join("secrets"))
            .status()
            .unwrap();
        assert!(out.success());
    });
    assert_eq!(fresh.log_in(common::PASSWORD), 200, "the accounts are back");
    let status = fresh.get("/api/backups");
    let job = &status["jobs"][0];
    assert_eq!(job["schedule"], "mon..fri 03:30", "{status}");
    assert_eq!(job["password_set"], false, "{job}");
    let history = fresh.get("/api/backups/history?job=box");
    let first = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == run["id"])
        .unwrap_or_else(|| panic!("{history}"));
    assert_eq!(
        (&first["result"], &first["snapshot"]),
        (&json!("ok"), &run["snapshot"])
    );
    assert_eq!(file_tree(&fresh.data.join("secrets")), kept);

    // The password, given again, and the restored box backs up.
    let (status, answer) = fresh.send(
        "PUT",
        "/api/backups/jobs/box",
        &json!({"job": obsbox.get("/api/settings/backups")["jobs"][0], "secrets": {"password": pbs::PASSWORD}}).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    fresh.send("POST", "/api/backups/jobs/box/run", "");
    let again = finished_run(&fresh, "box", "backup", second["id"].as_i64().unwrap());
    assert_eq!(again["result"], "ok", "{again}");
}

/// Lists the snapshots holding a box's state through setup's API.
fn own_state_snapshots(fresh: &Obsbox, source: &Value) -> Value {
    let (status, listing) = fresh.send("POST", "/api/setup/backup/snapshots", &source.to_string());
    assert_eq!(status, 200, "{listing}");
    listing
}

/// A restore at setup that is refused: its status and message; the box
/// is left fresh (still at setup, nothing staged).
fn restore_refused(fresh: &Obsbox, source: &Value, snapshot: &Value) -> (u16, Value) {
    let (status, body) = fresh.send(
        "POST",
        "/api/setup/backup/restore",
        &json!({"source": source, "snapshot": snapshot}).to_string(),
    );
    assert_ne!(status, 202, "{body}");
    assert!(!fresh.data.join("restore-pending").exists());
    let (still, _) = fresh.send("GET", "/api/session", "");
    assert_eq!(still, 403, "still at setup");
    (status, body)
}

/// Restores `snapshot` at setup and waits for obsbox to come back as the
/// restored box (set up, asking for a sign-in).
fn restore_at_setup(fresh: &Obsbox, source: &Value, snapshot: &Value) -> Value {
    let (status, answer) = fresh.send(
        "POST",
        "/api/setup/backup/restore",
        &json!({"source": source, "snapshot": snapshot}).to_string(),
    );
    assert_eq!(status, 202, "{answer}");
    wait_for(
        "obsbox to come back as the restored box",
        Duration::from_secs(60),
        || {
            let (status, _) = fresh.try_send("GET", "/api/session", "")?;
            (status == 401).then_some(())
        },
    );
    answer
}

/// Waits until the second after `run` started has passed: PBS refuses a
/// snapshot of a group that is not newer than its last one, to the second.
fn past_the_second_of(run: &Value) {
    let second = run["started_at"].as_i64().unwrap() / 1000;
    wait_for("the next second", Duration::from_secs(5), || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now > second + 1).then_some(())
    });
}

/// What box A holds that a restore must bring back: a second user, a
/// receiver with a secret, and a backup job of its own state with history.
struct OldBox {
    obsbox: Obsbox,
    first_run: Value,
    secrets: Vec<(String, Vec<u8>)>,
}

const OLGA: &str = "olga's long password";

fn old_box(obsbox: Obsbox, job: Value) -> OldBox {
    let (status, body) = obsbox.send(
        "POST",
        "/api/users",
        &json!({"name": "olga", "role": "operator", "password": OLGA, "confirm": OLGA}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = obsbox.send(
        "POST",
        "/api/alerts/receivers",
        &json!({"receiver": {"name": "hook", "kind": "webhook",
            "url": "http://127.0.0.1:9/hook", "authorize": true},
            "secret": "hook-token-123"})
        .to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let mut job = job;
    job["appliance_state"] = json!(true);
    job["schedule"] = json!("mon..fri 03:30");
    create_job(&obsbox, job);
    let first_run = backed_up(&obsbox, "box");
    // The copy a run takes holds that run as still under way: a second
    // run, so the first is in the copy as it ended.
    past_the_second_of(&first_run);
    obsbox.send("POST", "/api/backups/jobs/box/run", "");
    let second = finished_run(&obsbox, "box", "backup", first_run["id"].as_i64().unwrap());
    assert_eq!(second["result"], "ok", "{second}");
    let secrets = file_tree(&obsbox.data.join("secrets"))
        .into_iter()
        .filter(|(p, _)| !p.starts_with("backup/"))
        .collect();
    OldBox {
        obsbox,
        first_run,
        secrets,
    }
}

/// The restored box is the old one: its accounts (old passwords), settings,
/// secrets and history; the job has the repository's password again and
/// backs up.
fn is_restored(fresh: &mut Obsbox, old: &OldBox) {
    assert_eq!(
        fresh.log_in(common::PASSWORD),
        200,
        "the old admin password"
    );
    assert!(fresh.log_in_as("olga", OLGA, None).is_ok(), "the old user");
    assert_eq!(fresh.get("/api/settings"), old.obsbox.get("/api/settings"));
    assert_eq!(
        fresh.get("/api/alerts/receivers"),
        old.obsbox.get("/api/alerts/receivers")
    );
    let restored: Vec<(String, Vec<u8>)> = file_tree(&fresh.data.join("secrets"))
        .into_iter()
        .filter(|(p, _)| !p.starts_with("backup/"))
        .collect();
    assert_eq!(restored, old.secrets);
    let history = fresh.get("/api/backups/history?job=box");
    let first = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == old.first_run["id"])
        .unwrap_or_else(|| panic!("{history}"));
    assert_eq!(first, &old.first_run, "the history");
    let job = &fresh.get("/api/backups")["jobs"][0];
    assert_eq!(job["password_set"], true, "{job}");
    let newest = &history.as_array().unwrap()[0];
    let last = newest["id"].as_i64().unwrap();
    // The old box's last backup may be within this very second.
    past_the_second_of(newest);
    fresh.send("POST", "/api/backups/jobs/box/run", "");
    let again = finished_run(fresh, "box", "backup", last);
    assert_eq!(again["result"], "ok", "{again}");
    // Set up now: setup's restore is closed.
    let (status, body) = fresh.send("POST", "/api/setup/backup/snapshots", "{}");
    assert_eq!(status, 409, "{body}");
}

/// What the real restic prints for `args` on `repo` (the test's
/// password); the test fails with restic's error if it fails.
fn restic(repo: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", pbs::PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A snapshot in `repo` that looks like a box's state (the paths and tags
/// obsbox gives them) but holds `database` as the settings database.
fn crafted_state(repo: &Path, database: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("data/backup-staging/box/appliance/obsbox");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::copy(database, state.join("obsbox.db")).unwrap();
    let args = [
        "backup",
        "--json",
        "--host",
        "obsbox-box",
        "--tag",
        "obsbox,job=box",
    ];
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    args.push(state.as_os_str());
    restic(repo, &args)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .and_then(|v| v["snapshot_id"].as_str().map(String::from))
        .unwrap()
}

/// Box A backs up its own state with the real restic; box B, freshly
/// flashed, restores it from setup's API. Refused before that, each
/// leaving B fresh: a wrong password, no repository, a snapshot from a
/// newer obsbox and one whose database is damaged.
#[test]
fn a_fresh_box_restores_its_own_state_at_setup_with_restic() {
    let fx = fixture(1);
    let repo = restic_repository(&fx);
    let a = Obsbox::start(&[("services", services_only(&[]))]);
    let job = pbs::restic_job("box", &fx, &repo);
    let old = old_box(a, job);

    let mut b = Obsbox::start_fresh(&[("services", services_only(&[]))], &[]);
    let source = json!({"backend": "restic", "repository": repo, "password": pbs::PASSWORD});
    let listing = own_state_snapshots(&b, &source);
    let snapshots = listing["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 2, "{listing}");
    let newest = &snapshots[0];
    assert_eq!(
        (&newest["host"], &newest["job"]),
        (&json!("obsbox-box"), &json!("box"))
    );

    let wrong = json!({"backend": "restic", "repository": repo, "password": "wrong"});
    let (status, body) = b.send("POST", "/api/setup/backup/snapshots", &wrong.to_string());
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["problems"][0]["field"], "password", "{body}");
    let (status, body) = restore_refused(&b, &wrong, &newest["id"]);
    assert_eq!(status, 422, "{body}");
    let nowhere =
        json!({"backend": "restic", "repository": fx.root.join("nothing"), "password": "x"});
    let (status, body) = b.send("POST", "/api/setup/backup/snapshots", &nowhere.to_string());
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["problems"][0]["field"], "repository", "{body}");

    // Snapshots obsbox cannot take: from a newer obsbox, and damaged.
    let crafted = pbs::restic_init(&fx, "crafted", pbs::PASSWORD);
    let scratch = tempfile::tempdir().unwrap();
    let newer = scratch.path().join("newer.db");
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.execute_batch("CREATE TABLE settings (section TEXT); PRAGMA user_version = 999;")
        .unwrap();
    drop(conn);
    let damaged = scratch.path().join("damaged.db");
    std::fs::write(&damaged, "SQLite format 3\0".repeat(300)).unwrap();
    let from_the_future = crafted_state(&crafted, &newer);
    let broken = crafted_state(&crafted, &damaged);
    let crafted_source =
        json!({"backend": "restic", "repository": crafted, "password": pbs::PASSWORD});
    // restic's summary gives the short id; the listing the whole one.
    let listed = own_state_snapshots(&b, &crafted_source);
    let whole = |short: &str| {
        listed["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"].as_str().unwrap().starts_with(short))
            .unwrap_or_else(|| panic!("{short} in {listed}"))["id"]
            .clone()
    };
    let (from_the_future, broken) = (whole(&from_the_future), whole(&broken));
    let (status, body) = restore_refused(&b, &crafted_source, &from_the_future);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("newer obsbox"),
        "{body}"
    );
    let (status, body) = restore_refused(&b, &crafted_source, &broken);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("cannot be used"),
        "{body}"
    );

    restore_at_setup(&b, &source, &newest["id"]);
    is_restored(&mut b, &old);
    let log = b.log();
    assert!(!log.contains(pbs::PASSWORD), "the password is not logged");
}

/// The same through the PBS client stand-in: the archives `obsbox` and
/// `secrets` of the snapshot, restored from setup's API.
#[test]
fn a_fresh_box_restores_its_own_state_at_setup_with_pbs() {
    let fx = fixture(1);
    let a = pbs::start(&fx, &[], &[]);
    let old = old_box(a, job("box", &fx.source));

    let root = fx.root.display().to_string();
    let client = stand_in("proxmox-backup-client").display().to_string();
    let mut b = Obsbox::start_fresh(
        &[
            ("services", services_only(&[])),
            ("backups", json!({"client": client})),
        ],
        &[("PBS_STANDIN_ROOT", root.as_str())],
    );
    let source = json!({"backend": "pbs", "repository": "backup@pbs@localhost:store1",
        "password": pbs::PASSWORD});
    let listing = own_state_snapshots(&b, &source);
    let snapshots = listing["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 2, "{listing}");
    assert_eq!(snapshots[0]["host"], "obsbox-box", "{listing}");
    assert!(
        listing["fingerprint_error"].is_string(),
        "nothing answers TLS on localhost:8007 here: {listing}"
    );
    let wrong = json!({"backend": "pbs", "repository": "backup@pbs@localhost:store1",
        "password": "wrong"});
    let (status, body) = restore_refused(&b, &wrong, &snapshots[0]["id"]);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["problems"][0]["field"], "password", "{body}");

    restore_at_setup(&b, &source, &snapshots[0]["id"]);
    is_restored(&mut b, &old);
}

/// The setup page's restore from a backup in headless Chromium, with the
/// real restic (tests/browser/setup_restore.test.mjs).
#[test]
fn the_setup_page_restores_a_box_from_its_restic_backup() {
    common::browser_tests();
    let fx = fixture(1);
    let repo = restic_repository(&fx);
    let a = Obsbox::start(&[("services", services_only(&[]))]);
    let mut job = pbs::restic_job("box", &fx, &repo);
    job["appliance_state"] = json!(true);
    create_job(&a, job);
    backed_up(&a, "box");
    let b = Obsbox::start_fresh(&[("services", services_only(&[]))], &[]);
    common::run_browser_tests(
        &b,
        "setup_restore.test.mjs",
        &[
            ("REPOSITORY", repo.display().to_string()),
            ("REPOSITORY_PASSWORD", pbs::PASSWORD.into()),
            ("PASSWORD", common::PASSWORD.into()),
        ],
    );
    let (status, _) = b.send("GET", "/api/session", "");
    assert_eq!(status, 401, "set up as the old box");
}

/// With `backups.state_includes_credentials` on, the own-state backup (real
/// restic) holds the backup jobs' credentials too, privately: restored, the
/// box has its job's password again. (Off, the default, they are left out:
/// `the_boxs_own_state_restores_onto_a_fresh_data_directory`.)
#[test]
fn the_own_state_backup_holds_the_backup_credentials_only_when_asked() {
    let fx = fixture(1);
    let repo = restic_repository(&fx);
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("backups", json!({"state_includes_credentials": true})),
    ]);
    let mut state = pbs::restic_job("box", &fx, &repo);
    state["appliance_state"] = json!(true);
    create_job(&obsbox, state);
    obsbox.send("POST", "/api/backups/jobs/box/run", "");
    let run = finished_run(&obsbox, "box", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");

    let restored = tempfile::tempdir().unwrap();
    let (_, restored_secrets) = restore_state(&repo, restored.path());
    assert_eq!(
        file_tree(&restored_secrets),
        file_tree(&obsbox.data.join("secrets")),
        "every secret, the backup's own credentials too"
    );
    let password = restored_secrets.join("backup/box/password");
    assert_eq!(std::fs::read_to_string(&password).unwrap(), pbs::PASSWORD);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        password.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
}
