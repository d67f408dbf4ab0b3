//! The receipt log against an in-memory TPM stand-in (sealing bound to a "PCR state", an NV
//! counter): creation, continuation with the same identity, rollback, another measurement, a crash
//! between a head and its count, torn tails, edits, and durability. The same log on a real swtpm
//! is `tests/tests/receipt_log.rs`.

use super::*;
use secllama_protocol::receipt_log::parse;
use secllama_protocol::rfc9162::{verify_consistency, verify_inclusion};
use secllama_protocol::tree_head::verify_tree_head;

/// Sealing binds to `pcrs`; the counter only grows; `fail_increment` makes the next increment fail.
#[derive(Debug, Default)]
struct FakeTpm {
    pcrs: u8,
    counter: u64,
    fail_increment: bool,
}

impl LogTpm for FakeTpm {
    fn seal(&mut self, secret: &[u8]) -> Result<Vec<u8>, String> {
        Ok([&[self.pcrs], secret].concat())
    }
    fn unseal(&mut self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        match sealed.split_first() {
            Some((&p, s)) if p == self.pcrs => Ok(Zeroizing::new(s.to_vec())),
            _ => Err("TPM_RC_POLICY_FAIL".into()),
        }
    }
    fn counter(&mut self) -> Result<u64, String> {
        Ok(self.counter)
    }
    fn increment(&mut self) -> Result<u64, String> {
        if std::mem::take(&mut self.fail_increment) {
            return Err("TPM_RC_NV_UNAVAILABLE".into());
        }
        self.counter += 1;
        Ok(self.counter)
    }
}

fn open_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .unwrap()
}

fn open(path: &Path, tpm: &mut FakeTpm) -> Result<ReceiptLog, LogError> {
    ReceiptLog::open(open_file(path), path, tpm)
}

fn append(log: &mut ReceiptLog, receipt: &[u8]) -> u64 {
    let (index, end) = log.append(receipt).unwrap();
    log.file().durable_blocking(end).unwrap();
    index
}

#[test]
fn a_restarted_enclave_continues_its_log_with_the_same_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipts.log");
    let mut tpm = FakeTpm {
        counter: 41,
        ..FakeTpm::default()
    };
    let mut log = open(&path, &mut tpm).unwrap();
    // Creation: the identity and a first head over the empty tree, counted.
    assert_eq!(tpm.counter, 42);
    let first = log.last_head().unwrap().clone();
    assert_eq!((first.head.size, first.head.counter), (0, 42));
    let id = log.identity();
    for (i, r) in [&b"receipt 0"[..], b"receipt 1", b"receipt 2"]
        .iter()
        .enumerate()
    {
        assert_eq!(append(&mut log, r), i as u64);
    }
    let second = log.sign_head(&mut tpm).unwrap();
    assert_eq!(
        (second.head.size, second.head.counter, tpm.counter),
        (3, 43, 43)
    );
    verify_tree_head(&second.bytes, &id).unwrap();
    drop(log);

    let mut log = open(&path, &mut tpm).unwrap();
    assert_eq!(log.identity(), id, "the same identity continues the log");
    assert_eq!(log.len(), 3);
    assert_eq!(log.root(), second.head.root.0);
    assert_eq!(append(&mut log, b"receipt 3"), 3);
    let third = log.sign_head(&mut tpm).unwrap();
    assert_eq!(third.head.counter, 44);
    // Proofs against the heads.
    let leaf = rfc9162::leaf_hash(b"receipt 1");
    let path3 = log.inclusion_proof(1, 3).unwrap();
    verify_inclusion(&leaf, 1, 3, &path3, &second.head.root.0).unwrap();
    let proof = log.consistency_proof(3, 4).unwrap();
    verify_consistency(3, 4, &second.head.root.0, &third.head.root.0, &proof).unwrap();
    // The whole file verifies as any verifier reads it.
    let records = parse(&std::fs::read(&path).unwrap()).unwrap().records;
    let v = receipt_log::verify(&records).unwrap();
    assert_eq!(v.heads.len(), 3);
    assert_eq!(v.tree.len(), 4);
}

#[test]
fn another_measurement_cannot_continue_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipts.log");
    let mut tpm = FakeTpm::default();
    drop(open(&path, &mut tpm).unwrap());
    tpm.pcrs = 1;
    let e = open(&path, &mut tpm).unwrap_err().to_string();
    assert!(
        e.contains("log identity") && e.contains("does not unseal"),
        "{e}"
    );
}

#[test]
fn an_older_copy_of_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipts.log");
    let mut tpm = FakeTpm::default();
    let mut log = open(&path, &mut tpm).unwrap();
    append(&mut log, b"a");
    log.sign_head(&mut tpm).unwrap();
    let old = std::fs::read(&path).unwrap();
    append(&mut log, b"b");
    log.sign_head(&mut tpm).unwrap();
    drop(log);
    let full = std::fs::read(&path).unwrap();
    // The host restores the older copy: its last head is below the TPM counter.
    std::fs::write(&path, &old).unwrap();
    let e = open(&path, &mut tpm).unwrap_err().to_string();
    assert!(e.contains("rollback") && e.contains("older copy"), "{e}");
    // Cutting off the newest head alone (the host withholds it) is the same rollback.
    std::fs::write(&path, &full).unwrap();
    let records = parse(&full).unwrap().records;
    let last = records.last().unwrap();
    assert_eq!(last.kind, Kind::TreeHead);
    std::fs::write(&path, &full[..last.offset as usize]).unwrap();
    let e = open(&path, &mut tpm).unwrap_err().to_string();
    assert!(e.contains("rollback"), "{e}");
    // The full file still continues.
    std::fs::write(&path, &full).unwrap();
    assert_eq!(open(&path, &mut tpm).unwrap().len(), 2);
}

#[test]
fn a_head_written_but_not_counted_is_counted_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipts.log");
    let mut tpm = FakeTpm::default();
    let mut log = open(&path, &mut tpm).unwrap();
    append(&mut log, b"a");
    tpm.fail_increment = true;
    assert!(log.sign_head(&mut tpm).is_err(), "the count failed");
    // In the same run, the next head counts the missed one first.
    let h = log.sign_head(&mut tpm).unwrap();
    assert_eq!((h.head.counter, tpm.counter), (3, 3));
    // Across a restart: head in the file, count lost.
    append(&mut log, b"b");
    tpm.fail_increment = true;
    assert!(log.sign_head(&mut tpm).is_err());
    drop(log);
    let log = open(&path, &mut tpm).unwrap();
    assert_eq!((tpm.counter, log.last_head().unwrap().head.counter), (4, 4));
}

#[test]
fn a_torn_tail_is_cut_off_and_edits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipts.log");
    let mut tpm = FakeTpm::default();
    let mut log = open(&path, &mut tpm).unwrap();
    append(&mut log, b"acknowledged");
    log.sign_head(&mut tpm).unwrap();
    drop(log);
    let good = std::fs::read(&path).unwrap();
    // Every way a crash tears the last record: cut at any point, or zeros appended.
    let record = receipt_log::encode(Kind::Entry, b"never acknowledged").unwrap();
    for cut in 1..record.len() {
        std::fs::write(&path, [&good[..], &record[..cut]].concat()).unwrap();
        let log = open(&path, &mut tpm).unwrap();
        assert_eq!(log.len(), 1, "cut at {cut}");
        drop(log);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            good,
            "cut at {cut}: the tail is gone"
        );
    }
    std::fs::write(&path, [&good[..], &[0u8; 4096][..]].concat()).unwrap();
    drop(open(&path, &mut tpm).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), good);
    // A flipped byte inside the file (not the tail): refused with its offset.
    for i in [0, 10, good.len() / 2, good.len() - 40] {
        let mut b = good.clone();
        b[i] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert!(open(&path, &mut tpm).is_err(), "flip at {i}");
    }
    // An entry rewritten with a valid checksum: the head's root gives it away.
    let records = parse(&good).unwrap().records;
    let entry = records.iter().find(|r| r.kind == Kind::Entry).unwrap();
    let forged = receipt_log::encode(Kind::Entry, b"acknowledgeD").unwrap();
    let off = entry.offset as usize;
    let b = [&good[..off], &forged[..], &good[off + forged.len()..]].concat();
    std::fs::write(&path, &b).unwrap();
    let e = open(&path, &mut tpm).unwrap_err().to_string();
    assert!(e.contains("tree head root"), "{e}");
}

#[tokio::test]
async fn acknowledgement_waits_for_durability_and_a_failed_sync_stops_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipts.log");
    let mut tpm = FakeTpm::default();
    let mut log = open(&path, &mut tpm).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let (index, end) = log.append(b"first").unwrap();
    assert_eq!(index, 0);
    // Written at once (its place is fixed), durable once the sync thread says so.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
    assert!(end > before);
    log.file().durable(end).await.unwrap();
    log.file().fail_for_test();
    let e = log.append(b"second").unwrap_err().to_string();
    assert!(e.contains("no more receipts are issued"), "{e}");
    assert!(log.file().durable(end + 1).await.is_err());
    assert!(log.sign_head(&mut tpm).is_err());
}

/// A log disk (VM mode): fixed size, zeros past the log. Records are written in place, a torn
/// last write is zeroed rather than cut off, and a record that does not fit is refused.
#[tokio::test]
async fn a_log_disk_is_written_in_place_and_refuses_what_does_not_fit() {
    use crate::log::file::{LogFile, LogFileError, Medium};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.img");
    let capacity = 4096u64;
    std::fs::write(&path, vec![0u8; capacity as usize]).unwrap();
    let disk = Medium::Disk { capacity };
    let rw = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap()
    };
    let (file, records) = LogFile::open_on(rw(), &path, disk).unwrap();
    assert!(records.is_empty());
    let mut end = 0;
    for body in [&b"first receipt"[..], b"second receipt"] {
        end = file.append(Kind::Entry, body).unwrap();
        file.durable(end).await.unwrap();
    }
    drop(file);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, capacity, "a disk keeps its size");
    assert!(bytes[end as usize..].iter().all(|&b| b == 0));
    // A torn last write (a record's first bytes, then zeros): zeroed at the next open.
    let torn = receipt_log::encode(Kind::Entry, b"never acknowledged").unwrap();
    let mut b = bytes.clone();
    b[end as usize..end as usize + 20].copy_from_slice(&torn[..20]);
    std::fs::write(&path, &b).unwrap();
    let (file, records) = LogFile::open_on(rw(), &path, disk).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the torn write is zeroed"
    );
    // Full: the record that does not fit is refused, nothing is written.
    let big = vec![7u8; capacity as usize];
    match file.append(Kind::Entry, &big[..3000]) {
        Ok(e) => file.durable(e).await.unwrap(),
        Err(e) => panic!("3000 bytes fit: {e}"),
    }
    let e = file.append(Kind::Entry, &big[..2000]).unwrap_err();
    assert!(
        matches!(e, LogFileError::Full { capacity: 4096, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("the log disk is full"), "{e}");
    drop(file);
    let (_, records) = LogFile::open_on(rw(), &path, disk).unwrap();
    assert_eq!(records.len(), 3);
}
