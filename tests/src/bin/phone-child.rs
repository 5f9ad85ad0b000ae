//! A phone as a separate process, for the tests that SIGKILL it mid-write.
//!
//! `phone-child DIR KEY_HEX log RESIDENT` logs visits to RESIDENT forever, printing
//! `saved VISIT_ID` after each one the library reported saved.
//! `phone-child DIR KEY_HEX sync RESIDENT` does the same, syncing after every visit and
//! printing `synced N` (the visits receipted in that sync).

use mobile_ffi::{CancelToken, ConditionRecord, LinliClient, VisitInput, Wellbeing};
use std::io::Write;
use std::process::ExitCode;

fn visit(n: u64) -> VisitInput {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    VisitInput {
        project: "00000000-0000-0000-0000-000000000090".into(),
        unit: None,
        started_at: now - 3_600_000,
        ended_at: now - 1_800_000,
        services: vec![],
        condition: ConditionRecord {
            wellbeing: Wellbeing::Good,
            systolic: Some(120),
            diastolic: Some(80),
            blood_sugar_dmmol: None,
            remarks: String::new(),
        },
        hazards: vec![],
        notes: format!("visit {n} before the kill"),
        follow_up_needed: false,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, key, mode, resident] = args.as_slice() else {
        eprintln!("usage: phone-child DIR KEY_HEX log|sync RESIDENT");
        return ExitCode::FAILURE;
    };
    let Ok(key) = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(key.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        eprintln!("the key is not hex");
        return ExitCode::FAILURE;
    };
    let client = match LinliClient::open(dir.clone(), key) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot open: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for n in 0.. {
        match client.log_visit(resident.clone(), visit(n)) {
            Ok(id) => {
                let _ = writeln!(out, "saved {id}");
                let _ = out.flush();
            }
            Err(e) => {
                eprintln!("log_visit failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        if mode == "sync" {
            match client.sync(CancelToken::new()) {
                Ok(o) => {
                    let _ = writeln!(out, "synced {}", o.receipted.len());
                    let _ = out.flush();
                }
                Err(e) => {
                    eprintln!("sync failed: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}
