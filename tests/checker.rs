//! The lost-write checker (Jepsen's "set-full" idea; SPEC §1, §3: nothing
//! acknowledged is silently lost, concurrent writes are kept as siblings,
//! replicas converge).
//!
//! Clients run read-modify-write cycles on a few keys; each value carries a
//! unique id and the ids of the siblings its writer read. A nemesis kills
//! (SIGKILL), pauses (SIGSTOP/SIGCONT) and restarts real `dynamo` processes,
//! or — in process, with the faulty transport — partitions nodes and makes
//! links lossy and slow. After the heal and convergence every replica is
//! read: no acknowledged write may be lost (absent and not superseded), no
//! value may appear that nobody wrote, and replicas may not differ. See
//! tests/checker/model.rs for the precise definitions.
//!
//! These are the short CI runs. `scripts/checker.sh` runs the same tests
//! longer; every knob is an env var: `CHECKER_SEED` (replays the nemesis and
//! client choices a failed run printed), `CHECKER_OPS`, `CHECKER_SECONDS`,
//! `CHECKER_CLIENTS`, `CHECKER_KEYS`, `CHECKER_NODES`,
//! `CHECKER_CONVERGE_SECONDS`.

mod common;
#[path = "checker/inproc.rs"]
mod inproc;
#[path = "checker/model.rs"]
mod model;
#[path = "checker/procs.rs"]
mod procs;

use std::sync::Mutex;

use model::{Params, Report};

/// The two runs share two cores: one at a time, so faults and timeouts
/// mean what the nemesis intended.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn verdict(report: &Report, summary: &str, seed: u64) {
    println!("{summary}");
    eprintln!("{summary}");
    if !report.clean() {
        for p in report.problems.iter().take(100) {
            eprintln!("  {p}");
        }
        if report.problems.len() > 100 {
            eprintln!("  ... and {} more", report.problems.len() - 100);
        }
        panic!("the checker found problems (replay with CHECKER_SEED={seed:#x}): {report}");
    }
    assert!(report.acked > 0, "no write was acknowledged: {summary}");
}

#[test]
fn no_acknowledged_write_is_lost_when_processes_are_killed_paused_and_restarted() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // Clients stuck on a paused node wait out their timeout: more of them.
    let p = Params::from_env(4000, 15.0, 3, 6);
    eprintln!(
        "checker[processes] seed={:#x} (replay with CHECKER_SEED={:#x})",
        p.seed, p.seed
    );
    let (report, summary) = procs::run(&p);
    verdict(&report, &summary, p.seed);
}

#[test]
fn no_acknowledged_write_is_lost_under_partitions_and_lossy_links() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let p = Params::from_env(4000, 15.0, 3, 3);
    eprintln!(
        "checker[in-process] seed={:#x} (replay with CHECKER_SEED={:#x})",
        p.seed, p.seed
    );
    // The nodes are actors: the whole cluster runs on this thread's actix system.
    let (report, summary) = actix_rt::System::new().block_on(inproc::run(&p));
    verdict(&report, &summary, p.seed);
}
