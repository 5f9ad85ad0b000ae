//! The phone process SIGKILLed in the middle of logging visits and of syncing, then
//! reopened: every visit the library reported saved is there, and syncs to the server.

use crate::world::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `phone-child` in `mode` until it has printed `lines` lines starting with
/// `wait_for`, SIGKILLs it, and returns every visit it reported saved.
fn run_and_kill(
    phone: &Phone,
    mode: &str,
    resident: &str,
    wait_for: &str,
    lines: usize,
) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phone-child"))
        .args([
            &phone.dir.path().display().to_string(),
            &phone.key_hex(),
            mode,
            resident,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut saved = Vec::new();
    let mut seen = 0;
    let started = Instant::now();
    let mut line = String::new();
    while seen < lines {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the child stopped early: {:?}", child.wait());
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the child is too slow"
        );
        if let Some(id) = line.trim().strip_prefix("saved ") {
            saved.push(id.to_owned());
        }
        if line.starts_with(wait_for) {
            seen += 1;
        }
    }
    // SIGKILL (Child::kill sends SIGKILL on Unix): no destructor, no flush, no close.
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever it wrote after the last line we read may also be saved; it was not
    // reported, so only the reported ones must be there.
    saved
}

#[test]
fn a_phone_killed_while_logging_visits_keeps_every_saved_visit() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("王阿婆");
    let wang = w.volunteer("wang");
    w.assign(&wang, &resident);
    let mut v = w.phone(&wang);
    v.sync().unwrap();
    drop(coordinator);
    let mut all = Vec::new();
    for round in 0..3 {
        // Kill at a different point each round.
        drop(std::mem::replace(&mut v.client, Phone::new().client));
        let saved = run_and_kill(&v, "log", &resident, "saved", 5 + 7 * round);
        assert!(!saved.is_empty());
        v.reopen();
        let held = v.visit_ids(&resident);
        for id in &saved {
            assert!(
                held.contains(id),
                "visit {id} was reported saved and is gone"
            );
        }
        all.extend(saved);
    }
    // And they all reach the server.
    let outcome = v.sync().unwrap();
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(v.client.sync_status().unwrap().pending_changes, 0);
    let other = w.phone(&wang);
    other.sync().unwrap();
    let there = other.visit_ids(&resident);
    for id in &all {
        assert!(there.contains(id), "visit {id} did not reach the server");
    }
}

#[test]
fn a_phone_killed_while_syncing_loses_nothing_and_resumes() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("王阿婆");
    let wang = w.volunteer("wang");
    w.assign(&wang, &resident);
    let mut v = w.phone(&wang);
    v.sync().unwrap();
    drop(coordinator);
    let mut all = Vec::new();
    for round in 0..3 {
        drop(std::mem::replace(&mut v.client, Phone::new().client));
        // Wait for a few syncs to finish, then kill: the next log or sync is under way.
        let saved = run_and_kill(&v, "sync", &resident, "synced", 2 + round);
        v.reopen();
        let held = v.visit_ids(&resident);
        for id in &saved {
            assert!(
                held.contains(id),
                "visit {id} was reported saved and is gone"
            );
        }
        all.extend(saved);
    }
    let outcome = v.sync().unwrap();
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(v.client.sync_status().unwrap().pending_changes, 0);
    let other = w.phone(&wang);
    other.sync().unwrap();
    let there = other.visit_ids(&resident);
    for id in &all {
        assert!(there.contains(id), "visit {id} did not reach the server");
    }
}
