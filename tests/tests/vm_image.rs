//! The VM guest image without booting it (issue 13, docs/vm.md): `secllama image build` is
//! reproducible (two builds in different folders, at different times, give the same bytes), its
//! model disk verifies with `veritysetup verify` (a peer reading our parameters) and a flipped
//! byte makes it fail, and `secllama measure vm` predicts from the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_tests::launch::{bin, free_port};
use secllama_tests::vm::VmEnclave;
use std::path::Path;
use std::process::Command;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn build(config: &Path, out: &Path, epoch: Option<&str>) -> String {
    let mut c = Command::new(bin("secllama").unwrap());
    c.args(["image", "build", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out);
    match epoch {
        Some(e) => c.env("SOURCE_DATE_EPOCH", e),
        None => c.env_remove("SOURCE_DATE_EPOCH"),
    };
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The digests, without the output folder's name.
    text(&o.stdout)
        .lines()
        .map(|l| l.replace(&format!("{}/", out.display()), "OUT/"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn config(dir: &Path) -> std::path::PathBuf {
    let art = dir.join("art");
    std::fs::create_dir_all(&art).unwrap();
    let weights: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(art.join("model.gguf"), weights).unwrap();
    let runner = std::path::PathBuf::from(env!("CARGO_BIN_EXE_secllama-test-runner"));
    VmEnclave {
        art: art.clone(),
        state: dir.join("state"),
        runner: runner.clone(),
        runner_command: vec![runner.display().to_string()],
        runner_port: free_port().unwrap(),
        runner_ready_secs: 60,
        models: vec![art.join("model.gguf")],
        policy: secllama_tests::enclave::policy_for("Why is the sky blue?"),
        memory_mib: 1024,
    }
    .write()
    .unwrap()
}

#[test]
fn image_builds_are_reproducible_and_the_model_disk_verifies() {
    let dir = secllama_tests::launch::artifact_dir().unwrap();
    let config = config(dir.path());
    let a = build(&config, &dir.path().join("a"), None);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build(&config, &dir.path().join("elsewhere/b"), None);
    assert_eq!(a, b);
    for f in ["vmlinuz", "initrd.img", "cmdline", "model.img"] {
        assert_eq!(
            std::fs::read(dir.path().join("a").join(f)).unwrap(),
            std::fs::read(dir.path().join("elsewhere/b").join(f)).unwrap(),
            "{f}"
        );
    }
    for want in [
        "kernel ",
        "initrd ",
        "model ",
        "verity root ",
        "secllama.verity=",
    ] {
        assert!(a.contains(want), "{want} not in {a}");
    }
    // SOURCE_DATE_EPOCH is every mtime: another epoch, another initramfs.
    let c = build(&config, &dir.path().join("c"), Some("1700000000"));
    let initrd = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("initrd"))
            .unwrap()
            .to_string()
    };
    assert_ne!(initrd(&a), initrd(&c));
    // GNU cpio reads the archive: owners root, every mtime the epoch.
    let list = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cpio -itv --quiet < {}",
            dir.path().join("c/initrd.img").display()
        ))
        .output()
        .unwrap();
    let l = text(&list.stdout);
    assert!(
        l.contains(" init\n") || l.lines().any(|x| x.ends_with(" init")),
        "{l}"
    );
    assert!(
        l.lines().all(|x| x.contains("root") && x.contains("2023")),
        "{l}"
    );

    // veritysetup verifies the disk with the parameters on the command line; a flipped byte fails.
    let cmdline = std::fs::read_to_string(dir.path().join("a/cmdline")).unwrap();
    let v = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("secllama.verity="))
        .unwrap();
    let [blocks, hash_start, root, salt] = v.split(',').collect::<Vec<_>>()[..] else {
        panic!("{v}")
    };
    let verify = |disk: &Path| {
        Command::new("veritysetup")
            .arg("verify")
            .arg(disk)
            .arg(disk)
            .arg(root)
            .args(["--no-superblock", "--hash=sha256"])
            .arg(format!("--data-blocks={blocks}"))
            .arg(format!(
                "--hash-offset={}",
                hash_start.parse::<u64>().unwrap() * 4096
            ))
            .arg(format!("--salt={salt}"))
            .output()
            .unwrap()
    };
    let disk = dir.path().join("a/model.img");
    let ok = verify(&disk);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let mut d = std::fs::read(&disk).unwrap();
    d[100_000] ^= 1;
    std::fs::write(&disk, d).unwrap();
    let bad = verify(&disk);
    assert!(!bad.status.success());

    // The prediction is made from the same bytes: measuring twice gives the same PCRs.
    let m = |out: &str| {
        let o = secllama_tests::vm::measure_vm(&config, None, &dir.path().join(out), None).unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("sha256:"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let p = m("m1.toml");
    assert_eq!(p, m("m2.toml"));
    assert_eq!(p.len(), 2, "{p:?}");
    // A manifest without the firmware's PCRs only when asked for.
    let o = Command::new(bin("secllama").unwrap())
        .args(["measure", "vm", "--config"])
        .arg(&config)
        .arg("--manifest")
        .arg(dir.path().join("m3.toml"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--golden-log"),
        "{}",
        text(&o.stderr)
    );
}

/// `[vm] confidential = "sev-snp"`: `secllama measure vm` gives the SEV-SNP launch digest of
/// exactly the built image, equal to `sev-snp-measure` 0.0.13 on the same kernel, initrd, command
/// line, OVMF (the shared vectors' AmdSev build), vCPUs and type; and `secllama launch` on this
/// host refuses, naming what SNP needs.
#[test]
fn snp_launch_digest_of_the_image_equals_sev_snp_measure_and_launch_refuses_here() {
    let dir = secllama_tests::launch::artifact_dir().unwrap();
    let config = config(dir.path());
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    let ovmf = std::fs::canonicalize(shared.join("snp-measure/inputs/ovmf_AmdSev_suffix.bin"))
        .expect("the shared vectors (../shared/vectors)");
    let text_cfg = std::fs::read_to_string(&config).unwrap().replace(
        "[vm]\n",
        &format!(
            "[vm]\nconfidential = \"sev-snp\"\nsnp_ovmf = {:?}\nsnp_vcpu_type = \"EPYC-Milan\"\n",
            ovmf.display().to_string()
        ),
    );
    std::fs::write(&config, text_cfg).unwrap();
    let m = dir.path().join("snp-manifest.toml");
    let o = secllama_tests::vm::measure_vm(&config, None, &m, None).unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ours = text(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("snp launch digest: "))
        .unwrap()
        .to_string();
    let manifest = std::fs::read_to_string(&m).unwrap();
    assert!(
        manifest.contains(&ours) && manifest.contains("snp = true"),
        "{manifest}"
    );

    let image = dir.path().join("img");
    build(&config, &image, None);
    let venv = std::env::var_os("SECLLAMA_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let peer = Command::new(venv.join("bin/sev-snp-measure"))
        .args([
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-Milan",
            "--ovmf",
        ])
        .arg(&ovmf)
        .arg("--kernel")
        .arg(image.join("vmlinuz"))
        .arg("--initrd")
        .arg(image.join("initrd.img"))
        .arg("--append")
        .arg(std::fs::read_to_string(image.join("cmdline")).unwrap())
        .output()
        .expect("sev-snp-measure (scripts/setup.sh installs it into .venv)");
    assert!(peer.status.success(), "{}", text(&peer.stderr));
    assert_eq!(text(&peer.stdout).trim(), ours);

    let l = Command::new(bin("secllama").unwrap())
        .args(["launch", "--no-bridge", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!l.status.success());
    let e = text(&l.stderr);
    assert!(
        e.contains("sev-snp") && e.contains("QEMU ≥ 9.1") && e.contains("/dev/sev"),
        "{e}"
    );
}
