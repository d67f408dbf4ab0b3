//! Our initramfs archives (`secllama_host::image::cpio`) read by GNU cpio, a peer we did not write:
//! it lists every entry with the owner, mode and mtime we wrote, and unpacks the same bytes, link
//! and device; two builds give the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_host::image::cpio::{Entry, Kind, write_newc};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Command, Stdio};

fn entries() -> Vec<Entry> {
    let big: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 251) as u8).collect();
    vec![
        Entry {
            path: "init".into(),
            kind: Kind::File(b"#!/bin/sh\necho hi\n".to_vec()),
            perm: 0o755,
        },
        Entry {
            path: "etc/secllama/policy.json".into(),
            kind: Kind::File(b"{\"dataset\":[]}".to_vec()),
            perm: 0o644,
        },
        Entry {
            path: "lib/modules/x.ko".into(),
            kind: Kind::File(big),
            perm: 0o644,
        },
        Entry {
            path: "bin".into(),
            kind: Kind::Dir,
            perm: 0o755,
        },
        Entry {
            path: "sbin".into(),
            kind: Kind::Symlink("bin".into()),
            perm: 0o777,
        },
        Entry {
            path: "dev/console".into(),
            kind: Kind::CharDevice { major: 5, minor: 1 },
            perm: 0o600,
        },
        Entry {
            path: "empty".into(),
            kind: Kind::File(Vec::new()),
            perm: 0o600,
        },
    ]
}

fn cpio(args: &[&str], dir: &std::path::Path, input: &[u8]) -> String {
    let mut c = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU cpio (scripts/setup.sh installs it)");
    c.stdin.take().unwrap().write_all(input).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gnu_cpio_reads_what_we_write() {
    let archive = write_newc(&entries(), 1_700_000_000).unwrap();
    let again = write_newc(
        &entries().into_iter().rev().collect::<Vec<_>>(),
        1_700_000_000,
    )
    .unwrap();
    assert_eq!(archive, again, "reproducible");
    let dir = tempfile::tempdir().unwrap();

    // Listing: names in path order (parents added), owner root, the mtime we gave.
    let list = cpio(&["-t", "-v", "--quiet", "-H", "newc"], dir.path(), &archive);
    let names: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "bin",
            "dev",
            "dev/console",
            "empty",
            "etc",
            "etc/secllama",
            "etc/secllama/policy.json",
            "init",
            "lib",
            "lib/modules",
            "lib/modules/x.ko",
            "bin"
        ],
        "{list}"
    );
    assert!(
        list.lines()
            .all(|l| l.split_whitespace().nth(2) == Some("root")),
        "{list}"
    );
    assert!(list.contains("Nov 14  2023"), "mtime 1700000000: {list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("sbin -> bin")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("crw-------") && l.contains("5,") && l.ends_with("dev/console")),
        "{list}"
    );

    // Unpacking: the same bytes, modes, link and device.
    cpio(
        &["-i", "-d", "-m", "--quiet", "-H", "newc"],
        dir.path(),
        &archive,
    );
    for e in entries() {
        let p = dir.path().join(&e.path);
        let meta = std::fs::symlink_metadata(&p).unwrap();
        match e.kind {
            Kind::File(d) => {
                assert_eq!(std::fs::read(&p).unwrap(), d, "{}", e.path);
                assert_eq!(meta.permissions().mode() & 0o7777, e.perm, "{}", e.path);
            }
            Kind::Dir => assert!(meta.is_dir()),
            Kind::Symlink(t) => {
                assert_eq!(std::fs::read_link(&p).unwrap().to_str(), Some(t.as_str()))
            }
            Kind::CharDevice { .. } => assert!(meta.file_type().is_char_device()),
        }
    }
}
