//! The simulator on small hand-made traces whose right answers are worked out by hand: the
//! trace readers, the replay's counts and memory-time, and the comparison's normalisation.

use std::path::Path;
use std::sync::atomic::AtomicU64;

use kindling_scheduler::PolicySpec;
use kindling_sim::{BASELINE, PolicyOutcome, SimOptions, Trace, TraceError, compare, simulate};

/// An Azure 2019 invocations file: one row per function, `counts[m]` calls in minute `m`.
fn azure2019(rows: &[(&str, Vec<u64>)]) -> String {
    let minutes = rows[0].1.len();
    let mut text = String::from("HashFunction,HashOwner,HashApp");
    for m in 1..=minutes {
        text.push_str(&format!(",{m}"));
    }
    text.push('\n');
    for (name, counts) in rows {
        text.push_str(&format!("{name},{name},{name}"));
        for count in counts {
            text.push_str(&format!(",{count}"));
        }
        text.push('\n');
    }
    text
}

/// One function called once every 30 minutes, at minutes 0, 30, ..., 270, over 300 minutes.
fn every_30_minutes(dir: &Path) -> Trace {
    let counts: Vec<u64> = (0..300).map(|m| u64::from(m % 30 == 0)).collect();
    let path = dir.join("invocations_per_function_md.anon.d01.csv");
    std::fs::write(&path, azure2019(&[("cron", counts)])).unwrap();
    std::fs::write(
        dir.join("app_memory_percentiles.anon.d01.csv"),
        "HashOwner,HashApp,SampleCount,AverageAllocatedMb\ncron,cron,10,100\n",
    )
    .unwrap();
    Trace::load(dir, 128.0).unwrap()
}

fn run(trace: &Trace, policy: &str) -> PolicyOutcome {
    let spec = PolicySpec::parse(policy, 600_000).unwrap();
    simulate(
        trace,
        policy,
        &spec,
        &SimOptions::default(),
        &AtomicU64::new(0),
    )
    .unwrap()
}

#[test]
fn azure_2019_calls_are_spread_over_their_minute() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("invocations_per_function.csv"),
        azure2019(&[("a", vec![2, 0, 1]), ("b", vec![0, 1, 0])]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("function_durations_percentiles.csv"),
        "HashOwner,HashApp,HashFunction,Average,Count\na,a,a,250,3\n",
    )
    .unwrap();
    let trace = Trace::load(dir.path(), 64.0).unwrap();
    let calls: Vec<(u64, u32, u64)> = trace
        .calls
        .iter()
        .map(|c| (c.at, c.function, c.duration))
        .collect();
    assert_eq!(
        calls,
        vec![
            (15_000, 0, 250),
            (45_000, 0, 250),
            (90_000, 1, 0),
            (150_000, 0, 250)
        ]
    );
    assert_eq!(trace.span, 180_000);
    assert_eq!(
        trace.functions[1].memory_mb, 64.0,
        "no memory file: the default"
    );
}

/// The same two functions in each layout the Azure 2019 trace is published in.
#[test]
fn azure_2019_is_read_in_each_published_layout() {
    let expect = |trace: &Trace, what: &str| {
        let calls: Vec<(u64, u32, u64)> = trace
            .calls
            .iter()
            .map(|c| (c.at, c.function, c.duration))
            .collect();
        assert_eq!(
            calls,
            vec![(30_000, 0, 100), (90_000, 1, 7), (150_000, 0, 100)],
            "{what}"
        );
        let names: Vec<&str> = trace.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["fa", "fb"], "{what}");
        let memory: Vec<f64> = trace.functions.iter().map(|f| f.memory_mb).collect();
        assert_eq!(memory, [300.0, 40.0], "{what}");
        assert_eq!(trace.span, 180_000, "{what}");
    };

    // The release: owner, app, function, trigger, then minutes 1..N; memory per app.
    let release = tempfile::tempdir().unwrap();
    std::fs::write(
        release
            .path()
            .join("invocations_per_function_md.anon.d01.csv"),
        "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n\
         o1,a1,fa,http,1,0,1\n\
         o1,a2,fb,timer,0,1,0\n",
    )
    .unwrap();
    std::fs::write(
        release
            .path()
            .join("function_durations_percentiles.anon.d01.csv"),
        "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum\n\
         o1,a1,fa,100,2,90,110\n\
         o1,a2,fb,7,1,7,7\n",
    )
    .unwrap();
    std::fs::write(
        release.path().join("app_memory_percentiles.anon.d01.csv"),
        "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no1,a1,5,300\no1,a2,5,40\n",
    )
    .unwrap();
    expect(&Trace::load(release.path(), 1.0).unwrap(), "Azure release");

    // vHive invitro: minutes numbered from where the sample starts, memory per function.
    let invitro = tempfile::tempdir().unwrap();
    std::fs::write(
        invitro.path().join("invocations.csv"),
        "HashOwner,HashApp,HashFunction,Trigger,480,481,482\n\
         o1,a1,fa,http,1,0,1\n\
         o1,a1,fb,queue,0,1,0\n",
    )
    .unwrap();
    std::fs::write(
        invitro.path().join("durations.csv"),
        "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum\n\
         o1,a1,fa,100,2,90,110\n\
         o1,a1,fb,7,1,7,7\n",
    )
    .unwrap();
    std::fs::write(
        invitro.path().join("memory.csv"),
        "HashOwner,HashApp,HashFunction,SampleCount,AverageAllocatedMb\n\
         o1,a1,fa,5,300\n\
         o1,a1,fb,5,40\n",
    )
    .unwrap();
    expect(&Trace::load(invitro.path(), 1.0).unwrap(), "vHive invitro");

    // The invocations file alone, in the release's layout, is read by its header.
    let alone = release
        .path()
        .join("invocations_per_function_md.anon.d01.csv");
    let trace = Trace::load(&alone, 64.0).unwrap();
    assert_eq!(trace.invocations(), 3);
    assert!(trace.functions.iter().all(|f| f.memory_mb == 64.0));
}

#[test]
fn azure_2021_calls_start_a_duration_before_they_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invocations.txt");
    std::fs::write(
        &path,
        "app,func,end_timestamp,duration\nx,f,10.5,0.5\nx,g,3.0,1.0\nx,f,70.0,2.0\n",
    )
    .unwrap();
    let trace = Trace::load(&path, 32.0).unwrap();
    let calls: Vec<(u64, u32, u64)> = trace
        .calls
        .iter()
        .map(|c| (c.at, c.function, c.duration))
        .collect();
    assert_eq!(
        calls,
        vec![(2_000, 1, 1_000), (10_000, 0, 500), (68_000, 0, 2_000)]
    );
    assert_eq!(trace.functions[0].name, "x/f");
    assert_eq!(trace.span, 120_000, "rounded up to whole minutes");
}

#[test]
fn malformed_traces_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        Trace::load(&path, 1.0).unwrap_err().to_string()
    };
    let error = load("x.csv", "time,name\n1,a\n");
    assert!(error.contains("unknown header \"time,name\""), "{error}");
    let error = load("bad.csv", "HashFunction,HashOwner,HashApp,1,2\na,a,a,1,x\n");
    assert!(
        error.ends_with("bad.csv\" line 2: column \"2\": \"x\" is not a number >= 0"),
        "{error}"
    );
    let error = load("short.csv", "HashFunction,HashOwner,HashApp,1,2\na,a,a,1\n");
    assert!(
        error.ends_with("line 2: 4 fields, the header has 5"),
        "{error}"
    );
    let error = load("neg.txt", "app,func,end_timestamp,duration\na,f,-1,0\n");
    assert!(
        error.contains("line 2: column \"end_timestamp\""),
        "{error}"
    );
    let empty = tempfile::tempdir().unwrap();
    let error = Trace::load(empty.path(), 1.0).unwrap_err();
    assert!(matches!(error, TraceError::Format { .. }));
    assert!(
        error
            .to_string()
            .contains("no invocations_per_function*.csv or invocations*.csv")
    );
}

#[test]
fn fixed_keep_alive_misses_a_30_minute_timer_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let trace = every_30_minutes(dir.path());
    let outcome = run(&trace, "fixed:10m");
    assert_eq!((outcome.invocations, outcome.cold_starts), (10, 10));
    assert_eq!(outcome.cold_start_pct, 100.0);
    // Each call (half a minute into its minute) loads 100 MB, unloaded at the first tick 10
    // minutes after it: 10.5 minutes resident per call.
    assert_eq!(outcome.wasted_mb_minutes, 10.0 * 10.5 * 100.0);
    assert_eq!(outcome.peak_resident_mb, 100.0);
    assert_eq!(outcome.prewarms, 0);
}

#[test]
fn kindling_learns_the_timer_and_prewarms_it() {
    let dir = tempfile::tempdir().unwrap();
    let trace = every_30_minutes(dir.path());
    let outcome = run(&trace, "kindling");
    // The first two calls are cold; the second shows the 29 idle minutes between active
    // minutes, whose bin is then loaded ahead of every later call.
    assert_eq!((outcome.invocations, outcome.cold_starts), (10, 2));
    assert_eq!(outcome.p75_function_cold_start_pct, 20.0);
    // Resident: calls 1-2, 10.5 minutes each (the fixed keep-alive of a short history);
    // calls 3-5, 11 minutes each (pre-warmed a minute ahead, then the keep-alive); from the
    // sixth call on, five idle times are known and only the 29th-minute bin is held: 1 minute.
    // The last pre-warm, at the end of the trace, holds nothing.
    assert_eq!(
        outcome.wasted_mb_minutes,
        (2.0 * 10.5 + 3.0 * 11.0 + 5.0 * 1.0) * 100.0
    );
    assert_eq!((outcome.prewarms, outcome.prewarm_hits), (9, 8));
}

#[test]
fn hybrid_keeps_a_short_history_for_the_whole_range() {
    let dir = tempfile::tempdir().unwrap();
    let trace = every_30_minutes(dir.path());
    let outcome = run(&trace, "hybrid");
    // Fewer than 10 idle times: the 4-hour keep-alive, so only the first call is cold and
    // the function stays from 0.5 minutes to the end of the trace.
    assert_eq!(outcome.cold_starts, 1);
    assert_eq!(outcome.wasted_mb_minutes, 299.5 * 100.0);
}

#[test]
fn the_comparison_is_normalised_to_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let trace = every_30_minutes(dir.path());
    let policies: Vec<String> = ["kindling", "gdsf"].map(String::from).to_vec();
    let comparison = compare(
        &trace,
        &policies,
        600_000,
        &SimOptions::default(),
        2,
        &AtomicU64::new(0),
    )
    .unwrap();
    let names: Vec<&str> = comparison
        .outcomes
        .iter()
        .map(|o| o.policy.as_str())
        .collect();
    assert_eq!(
        names,
        [BASELINE, "kindling", "gdsf"],
        "the baseline always runs"
    );
    let baseline = comparison.baseline().unwrap();
    assert_eq!(baseline.wasted_vs_baseline_pct, Some(100.0));
    assert_eq!(
        comparison.outcomes[1].wasted_vs_baseline_pct,
        Some(100.0 * 5900.0 / 10500.0)
    );
    // GDSF got the baseline's mean resident memory as its budget: 10 x 10.5 minutes of
    // 100 MB over 300 minutes.
    assert_eq!(comparison.implied_budget_mb, Some(35.0));
    assert_eq!(comparison.outcomes[2].budget_mb, Some(35.0));
    let table = comparison.table();
    assert!(table.contains("gdsf (35 MB)"), "{table}");
    let svg = comparison.svg();
    assert!(svg.starts_with("<svg") && svg.contains(">kindling</text>"));
    let error = compare(
        &trace,
        &["lru:x=1".to_string()],
        0,
        &SimOptions::default(),
        1,
        &AtomicU64::new(0),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "keep-alive policy \"lru\": takes no parameters, found \"x=1\""
    );
}
