//! Benchmark: how soon [`pve::Client::wait_task`] notices that a task stopped, and how many
//! status requests it spends, with the adaptive policy versus a fixed 1 s poll (the default
//! `polling_interval` of proxmoxer's `Tasks.blocking_status`), in one run against one
//! `felhom-pve-sim` (DESIGN.md §6: "task completion noticed within 250 ms of the task stopping,
//! without hammering the API").
//!
//! For every nominal task duration the simulator's duration is switched per task with
//! `POST /_sim/task-ms` (drawn uniformly from nominal × [1 − jitter, 1 + jitter], so task ends do
//! not sit on a fixed phase of a 1 s grid). Guests run in parallel, one task per guest at a time
//! (snapshot create and delete alternate, so no guest lock is ever shared), and the two policies
//! are interleaved in one queue. Notice latency is the wall-clock epoch ms at which `wait_task`
//! returned minus the task's `end_at_ms` from `GET /_sim/tasks`; status requests are the
//! `GET /nodes/{node}/tasks/{upid}/status` entries of `GET /_sim/requests` for that UPID.
//!
//! Run: `cargo run --release -p pve --example wait_task_bench -- [--quick] [--json]
//! [--tasks-per-cell N] [--durations 300,1000,3000] [--guests N] [--jitter F] [--seed N]`.
//! See `bench/README.md`. Timings are reported, never asserted.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pve::{
    ApiToken, Client, ClientConfig, Fingerprint, PollPolicy, SnapshotName, TaskRef, Upid, Vmid,
    WaitOptions,
};
use serde_json::{json, Value};
use tokio::sync::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The simulator keeps at most this many request log entries (pve-sim `control.rs` `LOG_CAP`);
/// a phase that fills the log would undercount, so it is an error.
const SIM_LOG_CAP: usize = 10_000;

/// DESIGN.md §6: noticed within this long of the task stopping.
const TARGET_MS: i64 = 250;

const USAGE: &str = "\
usage: wait_task_bench [--quick] [--json] [--tasks-per-cell N] [--durations MS,MS,...]
                       [--guests N] [--jitter F] [--seed N]

  --tasks-per-cell N   tasks per (duration, policy) cell (default 50; --quick 4)
  --durations LIST     nominal task durations in ms (default 300,1000,3000; --quick 200,700)
  --guests N           guests working in parallel, one task each at a time (default 10; --quick 4)
  --jitter F           each duration is drawn from nominal x [1-F, 1+F] (default 0.4)
  --seed N             seed of the duration draw (default 1)
  --quick              tiny run for a CI smoke test
  --json               print one JSON line on stdout (the table goes to stderr)";

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Debug)]
struct Args {
    tasks_per_cell: usize,
    durations: Vec<u64>,
    guests: u32,
    jitter: f64,
    seed: u64,
    quick: bool,
    json: bool,
}

fn parse_args(raw: impl IntoIterator<Item = String>) -> Result<Option<Args>, BoxError> {
    let mut tasks_per_cell = None;
    let mut durations = None;
    let mut guests = None;
    let mut jitter = 0.4;
    let mut seed = 1;
    let mut quick = false;
    let mut json = false;
    let mut it = raw.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => quick = true,
            "--json" => json = true,
            "--tasks-per-cell" => tasks_per_cell = Some(value()?.parse::<usize>()?),
            "--durations" => {
                let list = value()?
                    .split(',')
                    .map(|d| d.trim().parse::<u64>())
                    .collect::<Result<Vec<_>, _>>()?;
                durations = Some(list);
            }
            "--guests" => guests = Some(value()?.parse::<u32>()?),
            "--jitter" => jitter = value()?.parse::<f64>()?,
            "--seed" => seed = value()?.parse::<u64>()?,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    let args = Args {
        tasks_per_cell: tasks_per_cell.unwrap_or(if quick { 4 } else { 50 }),
        durations: durations.unwrap_or_else(|| {
            if quick {
                vec![200, 700]
            } else {
                vec![300, 1000, 3000]
            }
        }),
        guests: guests.unwrap_or(if quick { 4 } else { 10 }),
        jitter,
        seed,
        quick,
        json,
    };
    if args.tasks_per_cell == 0 || args.guests == 0 || args.durations.is_empty() {
        return Err("--tasks-per-cell, --guests and --durations must be non-zero".into());
    }
    if args.durations.contains(&0) {
        return Err("task durations must be at least 1 ms".into());
    }
    if !(0.0..1.0).contains(&args.jitter) {
        return Err("--jitter must be in [0, 1)".into());
    }
    Ok(Some(args))
}

// ---------------------------------------------------------------------------------------------
// The two policies

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Policy {
    Adaptive,
    Fixed1s,
}

impl Policy {
    const ALL: [Policy; 2] = [Policy::Adaptive, Policy::Fixed1s];

    fn name(self) -> &'static str {
        match self {
            Policy::Adaptive => "adaptive",
            Policy::Fixed1s => "fixed-1s",
        }
    }

    fn poll(self) -> PollPolicy {
        match self {
            Policy::Adaptive => PollPolicy::adaptive(),
            Policy::Fixed1s => PollPolicy::fixed(Duration::from_secs(1)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `/_sim/` controls over HTTPS pinned to the simulator's fingerprint

struct SimControls {
    http: reqwest::Client,
    base: String,
}

impl SimControls {
    fn new(url: &str, fingerprint: Fingerprint) -> Result<Self, BoxError> {
        // The same strict pin as the API client (`pve::pinned_client_config`).
        let tls = pve::pinned_client_config(fingerprint)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(SimControls {
            http,
            base: url.trim_end_matches('/').to_owned(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, BoxError> {
        let resp = req.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            return Err(format!("{what}: simulator answered {status}: {body}").into());
        }
        Ok(body)
    }

    async fn set_task_ms(&self, ms: u64) -> Result<(), BoxError> {
        let req = self
            .http
            .post(format!("{}/_sim/task-ms", self.base))
            .json(&json!({ "ms": ms }));
        self.send(req, "POST /_sim/task-ms").await.map(drop)
    }

    /// UPID → `(end_at_ms, exitstatus)`.
    async fn task_ends(&self) -> Result<HashMap<String, (i64, Option<String>)>, BoxError> {
        let req = self.http.get(format!("{}/_sim/tasks", self.base));
        let body = self.send(req, "GET /_sim/tasks").await?;
        let tasks = body.as_array().ok_or("GET /_sim/tasks: not a list")?;
        let mut out = HashMap::new();
        for t in tasks {
            let upid = t["upid"]
                .as_str()
                .ok_or("GET /_sim/tasks: entry without upid")?;
            let end = t["end_at_ms"]
                .as_i64()
                .ok_or("GET /_sim/tasks: entry without end_at_ms")?;
            let exit = t["exitstatus"].as_str().map(str::to_owned);
            out.insert(upid.to_owned(), (end, exit));
        }
        Ok(out)
    }

    async fn requests(&self) -> Result<Vec<Value>, BoxError> {
        let req = self.http.get(format!("{}/_sim/requests", self.base));
        match self.send(req, "GET /_sim/requests").await? {
            Value::Array(entries) => Ok(entries),
            _ => Err("GET /_sim/requests: not a list".into()),
        }
    }

    async fn clear_requests(&self) -> Result<(), BoxError> {
        let req = self.http.delete(format!("{}/_sim/requests", self.base));
        self.send(req, "DELETE /_sim/requests").await.map(drop)
    }
}

// ---------------------------------------------------------------------------------------------
// One phase: every task of one nominal duration, both policies interleaved

/// splitmix64: a reproducible duration draw without a dependency.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Hands out the next trial and its duration. Setting the simulator's duration and starting the
/// task happen under this lock, so each task gets exactly the duration drawn for it.
struct Dispatch {
    queue: VecDeque<Policy>,
    rng: Rng,
    nominal_ms: u64,
    jitter: f64,
}

impl Dispatch {
    fn draw_ms(&mut self) -> u64 {
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * self.rng.next_f64();
        ((self.nominal_ms as f64 * factor).round() as u64).max(1)
    }
}

/// A finished wait.
struct Trial {
    nominal_ms: u64,
    policy: Policy,
    upid: Upid,
    duration_ms: u64,
    /// Just before the POST that started the task.
    post_sent_ms: i64,
    /// Just after its answer (the UPID) arrived.
    wait_started_ms: i64,
    returned_ms: i64,
}

/// A trial with what the simulator says about it.
struct Measured {
    nominal_ms: u64,
    policy: Policy,
    latency_ms: i64,
    status_requests: usize,
    waited_ms: i64,
}

struct Guest {
    vmid: Vmid,
    has_snapshot: bool,
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One guest's loop: take a trial, start a snapshot create or delete, wait with its policy.
async fn run_guest(
    client: Client,
    sim: Arc<SimControls>,
    dispatch: Arc<Mutex<Dispatch>>,
    mut guest: Guest,
    snapname: SnapshotName,
    timeout: Duration,
) -> Result<(Guest, Vec<Trial>), BoxError> {
    let mut trials = Vec::new();
    loop {
        let (policy, upid, duration_ms, nominal_ms, post_sent_ms) = {
            let mut d = dispatch.lock().await;
            let Some(policy) = d.queue.pop_front() else {
                break;
            };
            let ms = d.draw_ms();
            sim.set_task_ms(ms).await?;
            let post_sent_ms = epoch_ms();
            let task = if guest.has_snapshot {
                client.delete_snapshot(guest.vmid, &snapname, false).await?
            } else {
                client.create_snapshot(guest.vmid, &snapname, None).await?
            };
            let TaskRef::Task(upid) = task else {
                return Err(format!("guest {}: snapshot call returned no task", guest.vmid).into());
            };
            (policy, upid, ms, d.nominal_ms, post_sent_ms)
        };
        guest.has_snapshot = !guest.has_snapshot;
        let wait_started_ms = epoch_ms();
        client
            .wait_task(&upid, WaitOptions::new(timeout).policy(policy.poll()))
            .await?;
        let returned_ms = epoch_ms();
        trials.push(Trial {
            nominal_ms,
            policy,
            upid,
            duration_ms,
            post_sent_ms,
            wait_started_ms,
            returned_ms,
        });
    }
    Ok((guest, trials))
}

/// Runs every task of one nominal duration and measures them against the simulator's records.
async fn run_phase(
    client: &Client,
    sim: &Arc<SimControls>,
    guests: Vec<Guest>,
    args: &Args,
    nominal_ms: u64,
    rng: Rng,
) -> Result<(Vec<Guest>, Vec<Measured>, Rng), BoxError> {
    sim.clear_requests().await?;
    // Interleaved: A, F, A, F, … so both policies see the same load at the same time.
    let queue = (0..args.tasks_per_cell)
        .flat_map(|_| Policy::ALL)
        .collect::<VecDeque<_>>();
    let dispatch = Arc::new(Mutex::new(Dispatch {
        queue,
        rng,
        nominal_ms,
        jitter: args.jitter,
    }));
    let longest = (nominal_ms as f64 * (1.0 + args.jitter)) as u64;
    let timeout = Duration::from_millis(longest.saturating_mul(3) + 30_000);
    let snapname: SnapshotName = "benchsnap".parse()?;
    let mut handles = Vec::new();
    for guest in guests {
        handles.push(tokio::spawn(run_guest(
            client.clone(),
            Arc::clone(sim),
            Arc::clone(&dispatch),
            guest,
            snapname.clone(),
            timeout,
        )));
    }
    let mut guests = Vec::new();
    let mut trials = Vec::new();
    for h in handles {
        let (guest, t) = h.await??;
        guests.push(guest);
        trials.extend(t);
    }

    let ends = sim.task_ends().await?;
    let log = sim.requests().await?;
    if log.len() >= SIM_LOG_CAP {
        return Err(format!(
            "the simulator's request log filled up ({} entries): lower --tasks-per-cell",
            log.len()
        )
        .into());
    }
    let mut status_gets: HashMap<&str, usize> = HashMap::new();
    for entry in &log {
        let path = entry["path"].as_str().unwrap_or_default();
        if entry["method"] == "GET" {
            if let Some(upid) = status_path_upid(path) {
                *status_gets.entry(upid).or_default() += 1;
            }
        }
    }
    let mut measured = Vec::new();
    for t in &trials {
        let (end_at_ms, exit) = ends
            .get(t.upid.as_str())
            .ok_or_else(|| format!("/_sim/tasks does not list {}", t.upid))?;
        if exit.as_deref() != Some("OK") {
            return Err(format!("task {} ended with {exit:?}", t.upid).into());
        }
        // The simulator stamps the start while handling the POST, so the task must end within
        // the drawn duration of that window; otherwise something else changed the duration.
        let started_ms = end_at_ms - t.duration_ms as i64;
        if started_ms < t.post_sent_ms - 2 || started_ms > t.wait_started_ms + 2 {
            return Err(format!(
                "task {} started at {started_ms}, outside its POST ({}..{} ms): wrong duration",
                t.upid, t.post_sent_ms, t.wait_started_ms
            )
            .into());
        }
        measured.push(Measured {
            nominal_ms: t.nominal_ms,
            policy: t.policy,
            latency_ms: t.returned_ms - end_at_ms,
            status_requests: status_gets.get(t.upid.as_str()).copied().unwrap_or(0),
            waited_ms: t.returned_ms - t.wait_started_ms,
        });
    }
    let rng = Arc::try_unwrap(dispatch)
        .map_err(|_| "dispatch still shared after every guest finished")?
        .into_inner()
        .rng;
    Ok((guests, measured, rng))
}

/// `/nodes/{node}/tasks/{upid}/status` → the UPID (the log's paths are percent-decoded and
/// lack `/api2/json`).
fn status_path_upid(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/nodes/")?;
    let (_node, rest) = rest.split_once("/tasks/")?;
    rest.strip_suffix("/status")
}

// ---------------------------------------------------------------------------------------------
// Statistics and output

/// Linear interpolation between closest ranks (numpy's default); `sorted` is ascending.
fn percentile(sorted: &[i64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0] as f64,
        n => {
            let rank = p / 100.0 * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            let frac = rank - lo as f64;
            sorted[lo] as f64 + (sorted[hi] - sorted[lo]) as f64 * frac
        }
    }
}

struct CellStats {
    n: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: i64,
    within_target: f64,
    requests_per_task: f64,
    requests_per_s: f64,
}

impl CellStats {
    fn of<'a>(rows: impl Iterator<Item = &'a Measured>) -> CellStats {
        let rows: Vec<&Measured> = rows.collect();
        let mut lat: Vec<i64> = rows.iter().map(|m| m.latency_ms).collect();
        lat.sort_unstable();
        let n = rows.len();
        let requests: usize = rows.iter().map(|m| m.status_requests).sum();
        let waited_ms: i64 = rows.iter().map(|m| m.waited_ms).sum();
        let within = lat.iter().filter(|&&l| l <= TARGET_MS).count();
        CellStats {
            n,
            p50_ms: percentile(&lat, 50.0),
            p99_ms: percentile(&lat, 99.0),
            max_ms: lat.last().copied().unwrap_or(0),
            within_target: within as f64 / n.max(1) as f64,
            requests_per_task: requests as f64 / n.max(1) as f64,
            requests_per_s: requests as f64 / (waited_ms.max(1) as f64 / 1000.0),
        }
    }

    fn json(&self) -> Value {
        json!({
            "n": self.n,
            "p50_ms": round1(self.p50_ms),
            "p99_ms": round1(self.p99_ms),
            "max_ms": self.max_ms,
            "within_250ms": round3(self.within_target),
            "status_requests_per_task": round3(self.requests_per_task),
            "status_requests_per_s": round3(self.requests_per_s),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}

struct Report {
    table: String,
    json: Value,
}

fn report(args: &Args, measured: &[Measured], wall_s: f64) -> Report {
    let mut table = String::new();
    let mut cells = Vec::new();
    let _ = writeln!(
        table,
        "wait_task notice latency vs a fixed 1 s poll: {} guests, {} tasks per cell, duration jitter ±{:.0}%, wall {wall_s:.1} s",
        args.guests,
        args.tasks_per_cell,
        args.jitter * 100.0,
    );
    let _ = writeln!(
        table,
        "{:>8}  {:<9} {:>4} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "task ms", "policy", "n", "p50 ms", "p99 ms", "max ms", "<=250ms", "req/task", "req/s"
    );
    let mut row = |label: &str, policy: Policy, s: &CellStats| {
        let _ = writeln!(
            table,
            "{label:>8}  {:<9} {:>4} {:>8.1} {:>8.1} {:>8} {:>7.1}% {:>9.2} {:>7.2}",
            policy.name(),
            s.n,
            round1(s.p50_ms),
            round1(s.p99_ms),
            s.max_ms,
            s.within_target * 100.0,
            s.requests_per_task,
            s.requests_per_s,
        );
    };
    for &d in &args.durations {
        for policy in Policy::ALL {
            let s = CellStats::of(
                measured
                    .iter()
                    .filter(|m| m.nominal_ms == d && m.policy == policy),
            );
            row(&d.to_string(), policy, &s);
            let mut j = s.json();
            j["duration_ms"] = json!(d);
            j["policy"] = json!(policy.name());
            cells.push(j);
        }
    }
    let overall =
        |policy: Policy| CellStats::of(measured.iter().filter(move |m| m.policy == policy));
    let (a, f) = (overall(Policy::Adaptive), overall(Policy::Fixed1s));
    row("all", Policy::Adaptive, &a);
    row("all", Policy::Fixed1s, &f);
    let (r50, r99, rreq) = (
        round3(ratio(a.p50_ms, f.p50_ms)),
        round3(ratio(a.p99_ms, f.p99_ms)),
        round3(ratio(a.requests_per_task, f.requests_per_task)),
    );
    let _ = writeln!(
        table,
        "adaptive / fixed-1s: p50 {r50:.3}, p99 {r99:.3}, status requests per task {rreq:.3}"
    );
    let ratios = json!({ "p50": r50, "p99": r99, "status_requests_per_task": rreq });
    let json = json!({
        "bench": "wait_task",
        "unix_time": epoch_ms() / 1000,
        "quick": args.quick,
        "guests": args.guests,
        "tasks_per_cell": args.tasks_per_cell,
        "durations_ms": args.durations,
        "jitter": args.jitter,
        "seed": args.seed,
        "wall_s": round1(wall_s),
        "cells": cells,
        "overall": { "adaptive": a.json(), "fixed-1s": f.json() },
        "ratio_adaptive_over_fixed": ratios,
    });
    Report { table, json }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let started = std::time::Instant::now();
    let sim = testkit::Sim::start(testkit::SimOptions::default().guests(args.guests))?;
    let fingerprint: Fingerprint = sim.info.fingerprint.parse()?;
    let token: ApiToken = sim.info.token.parse()?;
    let client = Client::new(ClientConfig::new(
        sim.info.url.clone(),
        sim.info.node.clone(),
        token,
        fingerprint,
    ))?;
    let controls = Arc::new(SimControls::new(&sim.info.url, fingerprint)?);

    // The simulator seeds vmids 100, 101, … (pve-sim README, `--guests`).
    let mut guests = (0..args.guests)
        .map(|i| {
            Ok(Guest {
                vmid: Vmid::new(100 + i)?,
                has_snapshot: false,
            })
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    let mut rng = Rng(args.seed);
    let mut measured = Vec::new();
    for &nominal_ms in &args.durations {
        eprintln!("phase: {nominal_ms} ms tasks");
        let (g, m, r) = run_phase(&client, &controls, guests, &args, nominal_ms, rng).await?;
        guests = g;
        rng = r;
        measured.extend(m);
    }
    let out = report(&args, &measured, started.elapsed().as_secs_f64());
    if args.json {
        eprint!("{}", out.table);
        println!("{}", out.json);
    } else {
        print!("{}", out.table);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_between_ranks() {
        let v = [10, 20, 30, 40];
        assert_eq!(percentile(&v, 50.0), 25.0);
        assert_eq!(percentile(&v, 100.0), 40.0);
        assert_eq!(percentile(&v, 0.0), 10.0);
        assert!((percentile(&v, 99.0) - 39.7).abs() < 1e-9);
        assert_eq!(percentile(&[7], 99.0), 7.0);
    }

    #[test]
    fn status_path_yields_the_upid() {
        let upid = "UPID:pve:00001234:00005678:65000000:vzsnapshot:100:felhom-agent@pve!agent:";
        let path = format!("/nodes/pve/tasks/{upid}/status");
        assert_eq!(status_path_upid(&path), Some(upid));
        assert_eq!(
            status_path_upid(&format!("/nodes/pve/tasks/{upid}/log")),
            None
        );
        assert_eq!(status_path_upid("/nodes/pve/lxc/100/status/current"), None);
    }

    #[test]
    fn durations_stay_within_the_jitter_band() {
        let mut d = Dispatch {
            queue: VecDeque::new(),
            rng: Rng(7),
            nominal_ms: 1000,
            jitter: 0.4,
        };
        let draws: Vec<u64> = (0..1000).map(|_| d.draw_ms()).collect();
        assert!(draws.iter().all(|&ms| (600..=1400).contains(&ms)));
        // Spread over the band, so a 1 s poll meets task ends at every phase.
        assert!(draws.iter().any(|&ms| ms < 700) && draws.iter().any(|&ms| ms > 1300));
    }

    #[test]
    fn quick_and_explicit_flags() {
        let a = parse_args(["--quick".to_owned()]).unwrap().unwrap();
        assert_eq!((a.tasks_per_cell, a.guests), (4, 4));
        let a = parse_args(
            ["--durations", "250,900", "--tasks-per-cell", "7", "--quick"].map(str::to_owned),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.durations, vec![250, 900]);
        assert_eq!(a.tasks_per_cell, 7);
        assert!(parse_args(["--jitter", "1.5"].map(str::to_owned)).is_err());
        assert!(parse_args(["--bogus".to_owned()]).is_err());
    }
}
